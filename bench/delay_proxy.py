# Used by bench/far_store.sh.
# A TCP proxy that adds DELAY seconds before the first bytes of each answer (after a request):
# a store one round trip of DELAY away.
import asyncio, sys
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", target)
    state = {"asked": False}
    async def up():
        while data := await cr.read(65536):
            state["asked"] = True
            sw.write(data); await sw.drain()
        sw.close()
    async def down():
        while data := await sr.read(65536):
            if state["asked"]:
                state["asked"] = False
                await asyncio.sleep(delay)
            cw.write(data); await cw.drain()
        cw.close()
    await asyncio.gather(up(), down(), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server: await server.serve_forever()
asyncio.run(main())
