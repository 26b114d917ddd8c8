"""Hold N idle keep-alive connections open to an HTTP server (bench/proxy.sh).

    idle_conns.py PORT [N=1000] [HOLD_S=60]

Opens N connections to 127.0.0.1:PORT, sends one keep-alive GET / on each,
reads each response whole, then prints "ready N" and keeps every connection
open, idle, for HOLD_S seconds (or until killed), so that the server's memory
can be read while it holds them. Exits 1 if a connection fails or a response
is not a 200 with its whole body.
"""
import resource
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


def read_response(sock):
    """Read one response (headers plus Content-Length bytes); return its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the headers ended")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return int(lines[0].split()[1])


def main():
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0

    # Each connection is a descriptor here too: lift the soft limit to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(REQUEST)
        socks.append(s)
    # Requests were all sent first, so the server sees n connections at once.
    for i, s in enumerate(socks):
        status = read_response(s)
        if status != 200:
            sys.exit(f"idle_conns: connection {i}: status {status}")
    print(f"ready {len(socks)}", flush=True)
    time.sleep(hold)
    # Still open? A server that closed idle connections would show here as EOF.
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
    print(f"closed by server during the hold: {closed}", flush=True)


if __name__ == "__main__":
    main()
