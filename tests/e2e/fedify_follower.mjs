// A follower on a real ActivityPub implementation that Clarion did not write: Fedify
// (https://fedify.dev), run by tests/test_fediverse_e2e.py on loopback.
//
//   node fedify_follower.mjs PORT ACTOR_URL
//
// It serves one account, @reader, at http://127.0.0.1:PORT; discovers ACTOR_URL through
// WebFinger; follows it; and prints one JSON line per event: {"event": "listening"},
// {"event": "found", ...}, {"event": "followed"}, then {"event": "inbox", "type": "Accept" |
// "Create" | "Update" | "Delete", ...} for every activity its inbox accepts (Fedify verifies
// each one's HTTP Signature before the listener runs).
import { createServer } from "node:http";
import {
  Accept,
  Create,
  Delete,
  Endpoints,
  Follow,
  Note,
  Person,
  Update,
  createFederation,
  exportJwk,
  generateCryptoKeyPair,
  importJwk,
  lookupWebFinger,
  MemoryKvStore,
} from "@fedify/fedify";

const [port, target] = [Number(process.argv[2]), process.argv[3]];
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const kv = new MemoryKvStore();
const federation = createFederation({ kv, allowPrivateAddress: true });
const pair = await generateCryptoKeyPair("RSASSA-PKCS1-v1_5");
const keys = [{ privateKey: await exportJwk(pair.privateKey), publicKey: await exportJwk(pair.publicKey) }];

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== "reader") return null;
    const [key] = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: "A reader on Fedify",
      inbox: ctx.getInboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      publicKey: key.cryptographicKey,
    });
  })
  .setKeyPairsDispatcher(async (_ctx, identifier) => {
    if (identifier !== "reader") return [];
    return [
      {
        privateKey: await importJwk(keys[0].privateKey, "private"),
        publicKey: await importJwk(keys[0].publicKey, "public"),
      },
    ];
  });

const report = (type) => async (_ctx, activity) => {
  const object = await activity.getObject();
  say({
    event: "inbox",
    type,
    id: activity.id?.href,
    actor: activity.actorId?.href,
    object: object?.id?.href,
    content: object instanceof Note ? String(object.content ?? "") : null,
    summary: object instanceof Note && object.summary ? String(object.summary) : null,
  });
};

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Accept, report("Accept"))
  .on(Create, report("Create"))
  .on(Update, report("Update"))
  .on(Delete, report("Delete"));

const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const request = new Request(`http://127.0.0.1:${port}${req.url}`, {
    method: req.method,
    headers: req.headers,
    body: ["GET", "HEAD"].includes(req.method) ? undefined : body,
  });
  const response = await federation.fetch(request, { contextData: undefined });
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
});
server.listen(port, "127.0.0.1", async () => {
  say({ event: "listening" });
  const ctx = federation.createContext(new URL(`http://127.0.0.1:${port}/`), undefined);
  const jrd = await lookupWebFinger(target, { allowPrivateAddress: true });
  const self = jrd?.links?.find((l) => l.rel === "self")?.href;
  const actor = self ? await ctx.lookupObject(self) : null;
  say({ event: "found", webfinger: jrd?.subject ?? null, actor: actor?.id?.href ?? null });
  if (!actor) process.exit(2);
  await ctx.sendActivity(
    { identifier: "reader" },
    actor,
    new Follow({
      id: new URL(`http://127.0.0.1:${port}/users/reader#follow`),
      actor: ctx.getActorUri("reader"),
      object: actor.id,
    }),
  );
  say({ event: "followed" });
});
