/*
 * replica.h - the replica worker process.
 *
 * The controller starts each replica as `serve __replica` with two inherited
 * Unix sockets: the control channel on fd 3 and the data channel on fd 4
 * (see ipc.h). The replica waits for INIT on the control channel, loads the
 * plugin, runs `init` (and `reconfigure` with the user_config), answers
 * READY or FAILED, then serves REQUEST frames from the router on a pool of
 * worker threads until STOP or until the controller goes away.
 */
#ifndef SERVE_REPLICA_H
#define SERVE_REPLICA_H

/* Run the replica process; returns its exit code. */
int replica_main(void);

#endif
