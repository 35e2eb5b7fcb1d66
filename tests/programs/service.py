# A thread-per-connection HTTP service for the connected-traces tests and `cargo xtask bench
# connect`: it answers `ok`; with BACK_PORT set it calls the backend at /backend<path> (passing
# the incoming traceparent on only when FORWARD=1) and answers what it got.
import http.server, os, urllib.request
BACK = os.environ.get('BACK_PORT')
FORWARD = os.environ.get('FORWARD') == '1'
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        body = b'ok'
        if BACK:
            headers = {}
            if FORWARD and self.headers.get('traceparent'):
                headers['traceparent'] = self.headers['traceparent']
            url = 'http://127.0.0.1:%s/backend%s' % (BACK, self.path)
            body = urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer.request_queue_size = 128
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
