# The Python asyncio middle hop (aiohttp server + aiohttp ClientSession): calls BACK_PORT at
# /backend<path>.
import os
from aiohttp import ClientSession, web

BACK = os.environ['BACK_PORT']


async def handle(request):
    url = 'http://127.0.0.1:%s/backend%s' % (BACK, request.path)
    async with request.app['client'].get(url) as res:
        body = await res.read()
    return web.Response(body=body)


async def client(app):
    app['client'] = ClientSession()
    yield
    await app['client'].close()


app = web.Application()
app.cleanup_ctx.append(client)
app.router.add_get('/{tail:.*}', handle)
web.run_app(app, host='127.0.0.1', port=int(os.environ['PORT']), print=None, access_log=None)
