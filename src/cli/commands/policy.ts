/**
 * `lockbox policy add | list | show | remove`: the PCR policies (tpm/verify/quote-policy.ts QuotePolicy
 * JSON) enrolled peers are attested against, in the replicated control state.
 */
import { readFile } from "node:fs/promises";
import { requiredFlag, requiredPositional } from "../client-options.js";
import { clusterCommand } from "./cluster-call.js";
import { LockboxError } from "../../errors.js";

type Policy = { name: string; policy_json: string; used_by: string[] };

export const command = clusterCommand("policy", "manage the PCR policies peers are attested against", {
  add: {
    summary:
      "add or replace a PCR policy (QuotePolicy JSON: pcrs, hashAlg, signatureScheme, firmwareVersionMin)",
    arguments: [{ name: "<name>", description: "the policy's name" }],
    options: [{ flags: "--file <FILE>", description: "the policy JSON", required: true }],
    async run(client, args) {
      const name = requiredPositional(args, "policy name");
      const res = await client.adminCall<{ policy: Policy }>("PutPolicy", {
        name,
        policy_json: await readFile(requiredFlag(args, "file"), "utf8"),
      });
      return { json: res.policy, text: [`stored PCR policy ${res.policy.name}`] };
    },
  },
  list: {
    summary: "list the PCR policies and which peers use them",
    options: [],
    async run(client) {
      const res = await client.adminCall<{ policies: Policy[] }>("ListPolicies", {});
      return {
        json: res.policies,
        text: res.policies.map((p) => `${p.name.padEnd(24)} used by: ${p.used_by.join(", ") || "-"}`),
      };
    },
  },
  show: {
    summary: "print one PCR policy's JSON",
    arguments: [{ name: "<name>", description: "the policy's name" }],
    options: [],
    async run(client, args) {
      const name = requiredPositional(args, "policy name");
      const res = await client.adminCall<{ policies: Policy[] }>("ListPolicies", {});
      const p = res.policies.find((x) => x.name === name);
      if (p === undefined) throw new LockboxError("NOT_FOUND", `no PCR policy ${name}`);
      const json = JSON.parse(p.policy_json) as unknown;
      return { json: { name, policy: json, usedBy: p.used_by }, text: [JSON.stringify(json, null, 2)] };
    },
  },
  remove: {
    summary: "remove a PCR policy no peer uses",
    arguments: [{ name: "<name>", description: "the policy's name" }],
    options: [],
    async run(client, args) {
      const name = requiredPositional(args, "policy name");
      await client.adminCall("RemovePolicy", { name });
      return { json: { removed: name }, text: [`removed PCR policy ${name}`] };
    },
  },
});
