// An authenticating proxy for the MCP conformance suite, which cannot send a bearer token:
// it forwards every request to the node unchanged (Host and Origin included, so the node's
// DNS-rebinding checks see what the suite sent) and adds `Authorization: Bearer $BVER_TOKEN`.
// Usage: BVER_TOKEN=... node proxy.mjs LISTEN_PORT UPSTREAM_PORT (LISTEN_PORT 0: any free
// port; the port is printed on stdout).
import http from "node:http";

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
const token = process.env.BVER_TOKEN;
if (!token || Number.isNaN(listenPort) || !upstreamPort) {
  console.error("usage: BVER_TOKEN=... node proxy.mjs LISTEN_PORT UPSTREAM_PORT");
  process.exit(2);
}
http
  .createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    const up = http.request(
      { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", (e) => {
      console.error(`proxy: ${e.message}`);
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    // The client went away (an SSE stream it closed): close the upstream request too.
    res.on("close", () => { if (!res.writableEnded) up.destroy(); });
    req.pipe(up);
  })
  .listen(listenPort, "127.0.0.1", function () {
    console.log(this.address().port);
  });
