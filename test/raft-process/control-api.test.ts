import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { ControlCluster, leaderHint } from "./control-cluster.js";

const code = (e: unknown): number | undefined => (e as grpc.ServiceError).code;

test("control API: redirects from followers, rejects bad input unchanged, reads linearizably anywhere, transfers leadership, times out without quorum", async (t) => {
  const cluster = new ControlCluster();
  t.teardown(() => cluster.stopAll());
  await cluster.startVoters(3, ["--request-timeout-ms", "1500"]);
  const leader = await cluster.waitLeader();
  const followers = ["1", "2", "3"].filter((id) => id !== leader);
  const follower = cluster.node(followers[0]!);

  // A follower refuses a proposal and names the leader.
  const notLeader = await t.throwsAsync(follower.call("Propose", { op: "set", key: "k", value: "v" }));
  t.is(code(notLeader), grpc.status.FAILED_PRECONDITION);
  t.is(leaderHint(notLeader), leader);

  // Bad input: INVALID_ARGUMENT naming the field, and nothing is replicated.
  const before = await cluster.node(leader).status();
  for (const [req, field] of [
    [{ op: "rename", key: "k" }, /^op: /],
    [{ op: "set", key: "", value: "v" }, /^key: /],
    [{ op: "set", key: "k", value: "x".repeat(13_000) }, /^value: /],
  ] as const) {
    const err = await t.throwsAsync(cluster.node(leader).call("Propose", req));
    t.is(code(err), grpc.status.INVALID_ARGUMENT);
    t.regex((err as grpc.ServiceError).details, field);
  }
  const badAddr = await t.throwsAsync(
    cluster.node(leader).call("AddLearner", { id: "9", address: "not an address" }),
  );
  t.is(code(badAddr), grpc.status.INVALID_ARGUMENT);
  t.regex((badAddr as grpc.ServiceError).details, /^address: /);
  const badId = await t.throwsAsync(cluster.node(leader).call("Promote", { id: "" }));
  t.regex((badId as grpc.ServiceError).details, /^id: /);
  const after = await cluster.node(leader).status();
  t.is(after.commit, before.commit, "rejected requests changed nothing");
  t.deepEqual(after.learners, []);

  // Writes on the leader are read linearizably on a follower (ReadIndex forwarded to the leader).
  await cluster.node(leader).call("Propose", { op: "set", key: "k", value: "v1" });
  await cluster.node(leader).call("Propose", { op: "set", key: "k", value: "v2" });
  const read = await follower.call<{ found: boolean; value: string }>("Read", {
    key: "k",
    linearizable: true,
  });
  t.deepEqual({ found: read.found, value: read.value }, { found: true, value: "v2" });
  const del = await cluster.node(leader).call<{ existed: boolean }>("Propose", { op: "delete", key: "k" });
  t.true(del.existed);
  const gone = await follower.call<{ found: boolean }>("Read", { key: "k", linearizable: true });
  t.false(gone.found);

  // Leadership transfer to a chosen follower.
  const target = followers[1]!;
  await cluster.node(leader).call("TransferLeadership", { id: target });
  t.is(await cluster.waitLeader(), target);
  const wrongTransfer = await t.throwsAsync(
    cluster.node(leader).call("TransferLeadership", { id: followers[0]! }),
  );
  t.is(code(wrongTransfer), grpc.status.FAILED_PRECONDITION, "only the leader transfers leadership");

  // Without a quorum nothing linearizable can be answered: reads and proposals time out or redirect.
  await cluster.node(target).call("Propose", { op: "set", key: "q", value: "1" });
  for (const id of ["1", "2", "3"].filter((i) => i !== target)) await cluster.node(id).kill("SIGKILL");
  const lone = cluster.node(target);
  const lostRead = await t.throwsAsync(lone.call("Read", { key: "q", linearizable: true }));
  t.is(code(lostRead), grpc.status.DEADLINE_EXCEEDED);
  const lostWrite = await t.throwsAsync(lone.call("Propose", { op: "set", key: "q", value: "2" }));
  t.true([grpc.status.DEADLINE_EXCEEDED, grpc.status.FAILED_PRECONDITION].includes(code(lostWrite)!));
  const local = await lone.call<{ found: boolean; value: string }>("Read", { key: "q", linearizable: false });
  t.deepEqual(
    { found: local.found, value: local.value },
    { found: true, value: "1" },
    "a local read still answers",
  );
});
