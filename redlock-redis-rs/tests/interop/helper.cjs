"use strict";
// Drives node-redlock (npm `redlock` v5, on ioredis) for redlock-rs's interop test.
//
// Usage: node helper.cjs URL...  (the lock's nodes), with NODE_PATH naming the directory
// that holds the pinned node_modules. The protocol is helper.py's, line for line:
//
//   lock NAME TTL_MS        -> ok VALUE | refused        one attempt, no retry
//   unlock NAME             -> ok                        releases the lock `lock` took
//   work NAME COUNTER_URL COUNTER_KEY ITERATIONS TTL_MS HOLD_MS
//                           -> done SUCCESSES            a read-modify-write per held lock
//
// Any failure answers `error MESSAGE`, so the test shows it instead of waiting.

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const Redis = require("ioredis");
const { default: Redlock, ExecutionError, ResourceLockedError } = require("redlock");

// Bounded timeouts turn a hung node into an error line instead of a hang.
const REDIS_OPTIONS = { connectTimeout: 5000, commandTimeout: 5000, maxRetriesPerRequest: 1 };

function reply(line) {
  process.stdout.write(line + "\n");
}

// The installed version of a package (its package.json is not in its `exports`).
function version(name) {
  for (const dir of require.resolve.paths(name) || []) {
    const file = path.join(dir, name, "package.json");
    if (fs.existsSync(file)) {
      return JSON.parse(fs.readFileSync(file, "utf8")).version.replace(/^v/, "");
    }
  }
  return "unknown";
}

// "refused" when every vote against was another holder's key; anything else (a node
// error) is reported as an error, so that a broken node never passes for a refusal.
async function refusal(error) {
  if (!(error instanceof ExecutionError)) {
    throw error;
  }
  const stats = await Promise.all(error.attempts);
  const causes = stats.flatMap((s) => [...s.votesAgainst.values()]);
  const foreign = causes.filter((e) => !(e instanceof ResourceLockedError));
  if (foreign.length > 0) {
    throw new Error(foreign.map((e) => e.message).join("; "));
  }
  return "refused";
}

// node-redlock settles an acquire or a release as soon as a quorum has answered; the
// test checks every node right after, so these wait for the other nodes' answers too.
async function allAnswered(attempts) {
  await Promise.all(attempts);
}

async function lock(redlock, held, name, ttlMs) {
  try {
    const acquired = await redlock.acquire([name], Number(ttlMs), { retryCount: 0 });
    await allAnswered(acquired.attempts);
    held.set(name, acquired);
    return "ok " + acquired.value;
  } catch (error) {
    return refusal(error);
  }
}

async function unlock(redlock, held, name) {
  const acquired = held.get(name);
  held.delete(name);
  try {
    const released = await redlock.release(acquired, { retryCount: 0 });
    await allAnswered(released.attempts);
  } catch (error) {
    // The key is gone or another holder's: the release deleted nothing, as it should.
    await refusal(error);
  }
  return "ok";
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Many short retries, as the other languages' workers make: contention is the point of the
// run. They are made here, one attempt per `acquire` call, rather than with `retryCount`:
// within one call node-redlock keeps one value for every retry, releases only once the
// call gives up, and its acquire script refuses a key even when it holds that same value.
// So under contention the keys its failed attempts left on a majority shut every client
// out, itself included, for the rest of the call's retries.
async function acquireRetrying(redlock, name, ttlMs) {
  for (let attempt = 0; attempt < 400; attempt++) {
    try {
      return await redlock.acquire([name], ttlMs, { retryCount: 0 });
    } catch (error) {
      await refusal(error);
    }
    await sleep(5 + Math.floor(Math.random() * 40));
  }
  return null;
}

async function work(redlock, name, counterUrl, counterKey, iterations, ttlMs, holdMs) {
  const counter = new Redis(counterUrl, REDIS_OPTIONS);
  let successes = 0;
  try {
    for (let i = 0; i < Number(iterations); i++) {
      const held = await acquireRetrying(redlock, name, Number(ttlMs));
      if (held === null) {
        continue;
      }
      const value = Number((await counter.get(counterKey)) ?? 0);
      await sleep(Number(holdMs));
      await counter.set(counterKey, String(value + 1));
      await held.release();
      successes += 1;
    }
  } finally {
    counter.disconnect();
  }
  return "done " + successes;
}

async function main() {
  const clients = process.argv.slice(2).map((url) => new Redis(url, REDIS_OPTIONS));
  const redlock = new Redlock(clients);
  const held = new Map();
  reply("ready " + version("redlock"));
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [command, ...args] = line.trim().split(/\s+/);
    try {
      if (command === "lock") {
        reply(await lock(redlock, held, ...args));
      } else if (command === "unlock") {
        reply(await unlock(redlock, held, ...args));
      } else if (command === "work") {
        reply(await work(redlock, ...args));
      } else {
        reply("error unknown command " + command);
      }
    } catch (error) {
      reply("error " + (error && error.message ? error.message : String(error)));
    }
  }
  clients.forEach((client) => client.disconnect());
}

main().catch((error) => {
  reply("error " + error.message);
  process.exit(1);
});
