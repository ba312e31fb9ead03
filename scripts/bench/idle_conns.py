#!/usr/bin/python3
"""Opens N TLS connections to a proxy, sends one keep-alive GET on each, reads the
response (not with --no-request: the handshake only), then holds every connection
idle until told to stop.

    idle_conns.py --port PORT [--host 127.0.0.1] [--sni localhost] [-n 1000]
                  [--parallel 50] [--hold 600] [--no-request]

Prints "ready opened=N failed=F" on stdout once every connection is idle (the
caller then samples the server's memory), and closes everything on SIGTERM or
SIGINT, or after --hold seconds. Standard library only.
"""
import argparse
import asyncio
import signal
import ssl
import sys


async def open_one(args, ctx, sem, conns, failures):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(args.host, args.port, ssl=ctx,
                                        server_hostname=args.sni), 30)
            if args.no_request:
                conns.append((reader, writer))
                return
            writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % args.sni.encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 30)
            conns.append((reader, writer))
        except Exception as e:  # noqa: BLE001 - reported, counted
            failures.append(repr(e))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--hold", type=float, default=600)
    p.add_argument("--no-request", action="store_true",
                   help="hold each connection right after its handshake")
    args = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(args.parallel)
    conns, failures = [], []
    await asyncio.gather(*(open_one(args, ctx, sem, conns, failures) for _ in range(args.n)))
    print(f"ready opened={len(conns)} failed={len(failures)}", flush=True)
    for f in failures[:5]:
        print(f"failure: {f}", file=sys.stderr)

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    try:
        await asyncio.wait_for(done.wait(), args.hold)
    except asyncio.TimeoutError:
        pass
    # Count how many the server closed while they were idle.
    dropped = sum(1 for r, _ in conns if r.at_eof())
    print(f"closing dropped_while_idle={dropped}", flush=True)
    for _, w in conns:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
