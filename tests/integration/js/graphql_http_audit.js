// The graphql-http audit (GraphQL over HTTP spec conformance) against a running gateway.
// Usage: node graphql_http_audit.js URL TOKEN  (graphql-http resolvable via NODE_PATH)
// Prints the results as JSON: [{status: "ok" | "warn" | "error", id, name, reason}].
const { auditServer } = require("graphql-http");

const [url, token] = process.argv.slice(2);
const signedIn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set("Authorization", `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};

auditServer({ url, fetchFn: signedIn }).then((results) => {
  console.log(JSON.stringify(results.map((r) => ({ status: r.status, id: r.id, name: r.name, reason: r.reason || null }))));
}, (err) => {
  console.error(err);
  process.exit(2);
});
