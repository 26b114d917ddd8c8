"""FastAPI peer of the proxy benchmark (bench/proxy.sh): 200 "ok", text/plain, on any path.

Run with Debian's python, which sees the Debian packages (python3-fastapi, -uvicorn,
-uvloop, -httptools), and uvloop + httptools: the asyncio loop lacks TCP_NODELAY
and costs ~40 ms a request (see ../shared/bench-notes.md):

    cd bench && /usr/bin/python3 -m uvicorn fastapi_noop:app --port PORT \
        --loop uvloop --http httptools --workers 1 --log-level warning --no-access-log
"""
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

# Two shapes of the same no-op endpoint, both common in FastAPI code: an
# `async def` runs on the event loop; a plain `def` runs in FastAPI's thread
# pool (the shape of most model endpoints, which call blocking code).
app = FastAPI()
app_sync = FastAPI()


@app.get("/{path:path}", response_class=PlainTextResponse)
async def noop(path: str):
    return PlainTextResponse("ok")


@app_sync.get("/{path:path}", response_class=PlainTextResponse)
def noop_sync(path: str):
    return PlainTextResponse("ok")
