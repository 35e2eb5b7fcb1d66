// The Node.js middle hop (http server + fetch): calls BACK_PORT at /backend<path>.
const back = process.env.BACK_PORT;
require('http').createServer(async (q, r) => {
  try {
    const res = await fetch(`http://127.0.0.1:${back}/backend${q.url}`);
    const b = Buffer.from(await res.arrayBuffer());
    r.writeHead(200, { 'content-length': b.length });
    r.end(b);
  } catch (e) { r.writeHead(502); r.end(); }
}).listen(+process.env.PORT, '127.0.0.1');
