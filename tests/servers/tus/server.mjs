// The tus 1.0 reference server (@tus/server + @tus/file-store) for wxtransfer's tests.
//
//   node server.mjs --port N --dir DIR      (N = 0: any free port)
//
// Listens on 127.0.0.1 only, serves the tus endpoint at /files, keeps uploads in DIR
// (<id> = the bytes so far, <id>.json = the upload's record), prints one line
// "LISTENING <port>" once it listens, and exits 0 on SIGTERM or SIGINT.
//
// Location: always absolute, "http://127.0.0.1:<port>/files/<id>", where <port> is the
// one in the request's Host header (the one the client connected to: the server's, or a
// proxy's in front of it), or the server's own when there is no Host port. The host is
// always 127.0.0.1, whatever the Host header names.
//
// Each request, once its connection is done with it, is logged to stderr as one line
// "REQUEST <method> <status or -> <Upload-Offset sent or ->": "-" for a status means the
// connection ended before any answer (a cut PATCH).
import { parseArgs } from 'node:util';

import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, dir: { type: 'string' } },
});
if (!values.dir) {
  console.error('usage: node server.mjs --port N --dir DIR');
  process.exit(2);
}

let listenPort = 0;
const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory: values.dir }),
  respectForwardedHeaders: false,
  generateUrl(req, { path, id }) {
    const port = /:(\d+)$/.exec(req.headers.get('host') ?? '')?.[1] ?? listenPort;
    return `http://127.0.0.1:${port}${path}/${id}`;
  },
});

const http = tus.listen({ host: '127.0.0.1', port: Number(values.port) }, () => {
  listenPort = http.address().port;
  process.stdout.write(`LISTENING ${listenPort}\n`);
});
http.prependListener('request', (req, res) => {
  res.on('close', () => {
    const status = res.headersSent ? res.statusCode : '-';
    process.stderr.write(`REQUEST ${req.method} ${status} ${req.headers['upload-offset'] ?? '-'}\n`);
  });
});

const stop = () => {
  http.close(() => process.exit(0));
  http.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
