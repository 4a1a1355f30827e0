import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import type { KeyMeta } from "../../src/keys/key-model.js";
import { admin, openFixture, serviceOf } from "./key-service-fixture.js";

async function seed(service: import("../../src/keys/key-service.js").KeyService): Promise<KeyMeta[]> {
  const made: KeyMeta[] = [];
  for (let i = 0; i < 25; i++) {
    made.push(
      await service.createKey(admin, {
        project: "tenant-a",
        scope: i % 2 === 0 ? "vol-even" : "vol-odd",
        name: `k${i}`,
        algorithm: "AES",
        bitLength: 128,
      }),
    );
  }
  await service.createKey(admin, {
    project: "tenant-ab",
    scope: "vol-even",
    name: "other",
    algorithm: "AES",
    bitLength: 128,
  });
  await service.createKey(admin, {
    project: "tenant-b",
    scope: "vol-even",
    name: "other",
    algorithm: "AES",
    bitLength: 128,
  });
  return made;
}

test("listKeys pages through a whole project, every key once, and only that project", async (t) => {
  const { handle } = await openFixture(t);
  const made = await seed(handle.service);
  const seen: string[] = [];
  let token = "";
  let pages = 0;
  do {
    const page = await handle.service.listKeys(admin, {
      project: "tenant-a",
      pageSize: 10,
      pageToken: token,
    });
    t.true(page.keys.length <= 10);
    for (const k of page.keys) t.is(k.project, "tenant-a");
    seen.push(...page.keys.map((k) => k.id));
    token = page.nextPageToken;
    pages += 1;
  } while (token !== "" && pages < 10);
  t.is(pages, 3);
  t.deepEqual([...seen].sort(), made.map((m) => m.id).sort());
});

test("listKeys by scope lists only that scope; default page size takes everything here", async (t) => {
  const { handle } = await openFixture(t);
  const made = await seed(handle.service);
  const odd = await handle.service.listKeys(admin, { project: "tenant-a", scope: "vol-odd" });
  t.is(odd.nextPageToken, "");
  t.deepEqual(
    odd.keys.map((k) => k.id).sort(),
    made
      .filter((m) => m.scope === "vol-odd")
      .map((m) => m.id)
      .sort(),
  );
  t.is((await handle.service.listKeys(admin, { project: "tenant-a" })).keys.length, 25);
  t.deepEqual(await handle.service.listKeys(admin, { project: "nobody" }), { keys: [], nextPageToken: "" });
});

test("listKeys shows tombstones with state destroyed", async (t) => {
  const { handle } = await openFixture(t);
  const meta = await handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  await handle.service.deleteKey(admin, meta);
  const { keys } = await handle.service.listKeys(admin, { project: "p" });
  t.is(keys.length, 1);
  t.is(keys[0]!.state, "destroyed");
});

test("a tampered, forged or foreign page token is INVALID_ARGUMENT page_token", async (t) => {
  const { handle } = await openFixture(t);
  await seed(handle.service);
  const { nextPageToken } = await handle.service.listKeys(admin, { project: "tenant-a", pageSize: 5 });
  t.not(nextPageToken, "");
  const [body, tag] = nextPageToken.split(".") as [string, string];
  const payload = JSON.parse(Buffer.from(body, "base64url").toString());
  const forgedBody = Buffer.from(JSON.stringify({ ...payload, p: "tenant-b", a: "idx/tenant-b/" })).toString(
    "base64url",
  );
  const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
  const bad = [
    flip(nextPageToken, 3), // body edited
    flip(nextPageToken, nextPageToken.length - 2), // tag edited
    `${forgedBody}.${tag}`, // body replaced, old tag
    `${body}.`,
    `${body}`,
    `${body}.${tag}.x`,
    `${body}.${tag}=`,
    "",
  ];
  for (const token of bad.filter((x) => x !== "")) {
    const e = await t.throwsAsync<LockboxError>(
      handle.service.listKeys(admin, { project: "tenant-a", pageSize: 5, pageToken: token }),
    );
    t.true(isLockboxError(e, "INVALID_ARGUMENT"), token);
    t.is(e!.field, "page_token");
  }
  // A genuine token used for another project or scope is refused too.
  for (const req of [{ project: "tenant-b" }, { project: "tenant-a", scope: "vol-odd" }]) {
    const e = await t.throwsAsync<LockboxError>(
      handle.service.listKeys(admin, { ...req, pageSize: 5, pageToken: nextPageToken }),
    );
    t.is(e!.field, "page_token");
  }
  // And tokens die with the master key: another store's CMK gives another MAC key.
  const other = await openFixture(t);
  const e = await t.throwsAsync<LockboxError>(
    other.handle.service.listKeys(admin, { project: "tenant-a", pageSize: 5, pageToken: nextPageToken }),
  );
  t.is(e!.field, "page_token");
});

test("a service caller lists its own project", async (t) => {
  const { handle } = await openFixture(t);
  await seed(handle.service);
  const caller = serviceOf("vol-host", "tenant-b");
  t.is((await handle.service.listKeys(caller, { project: "tenant-b" })).keys.length, 1);
});
