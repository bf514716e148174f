// Test-only: runs the providers' official npm packages for the Go tests of
// the webhook package (interop_node_test.go). Reads a JSON array of calls on
// stdin and writes a JSON array of results on stdout, one per call:
//
//   {"op":"octokit-sign","secret":s,"body":b}                    -> {"signature":"sha256=…"}
//   {"op":"octokit-verify","secret":s,"body":b,"signature":x,
//    "additional":[s2,…]}                                        -> {"ok":bool}
//   {"op":"shopify-sign","secret":s,"body":b}                    -> {"signature":"<base64>"}
//   {"op":"shopify-validate","secret":s,"body":b,"headers":{…}}  -> {"valid":bool,"reason":…,…}
//
// Bodies are strings (UTF-8), as both packages take them.
import { sign, verify, verifyWithFallback } from '@octokit/webhooks-methods';
import '@shopify/shopify-api/adapters/node';
import { shopifyApi, ApiVersion, LogSeverity } from '@shopify/shopify-api';
import { getHmac } from '@shopify/shopify-api/test-helpers';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const calls = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = [];
for (const c of calls) {
  switch (c.op) {
    case 'octokit-sign':
      out.push({ signature: await sign(c.secret, c.body) });
      break;
    case 'octokit-verify':
      out.push({
        ok: c.additional
          ? await verifyWithFallback(c.secret, c.body, c.signature, c.additional)
          : await verify(c.secret, c.body, c.signature),
      });
      break;
    case 'shopify-sign':
      out.push({ signature: getHmac(c.body, c.secret) });
      break;
    case 'shopify-validate': {
      const shopify = shopifyApi({
        apiKey: 'interop-test-key',
        apiSecretKey: c.secret,
        scopes: [],
        hostName: 'localhost',
        apiVersion: ApiVersion.January25,
        isEmbeddedApp: false,
        logger: { level: LogSeverity.Error, log: async () => {} },
      });
      const headers = {};
      for (const [k, v] of Object.entries(c.headers)) headers[k.toLowerCase()] = v;
      const res = await shopify.webhooks.validate({
        rawBody: c.body,
        rawRequest: { headers, method: 'POST', url: '/hook' },
        rawResponse: {},
      });
      out.push(res);
      break;
    }
    default:
      throw new Error(`unknown op ${c.op}`);
  }
}
process.stdout.write(JSON.stringify(out));
