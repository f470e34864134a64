"""Drives the PyPI `redlock` package (RedLockFactory) for redlock-rs's interop test.

Usage: helper.py URL...  (the lock's nodes). Reads one command a line on stdin and answers
one line on stdout; `interop/foreign.rs` holds the protocol:

    lock NAME TTL_MS        -> ok VALUE | refused        one attempt, no retry
    unlock NAME             -> ok                        releases the lock `lock` took
    work NAME COUNTER_URL COUNTER_KEY ITERATIONS TTL_MS HOLD_MS
                            -> done SUCCESSES            a read-modify-write per held lock

Any failure answers `error MESSAGE`, so the test shows it instead of waiting.
"""

import sys
import time

import redis
import redlock

# A bounded socket timeout turns a hung node into an error line instead of a hang.
SOCKET_TIMEOUT_S = 5


def reply(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def lock(factory, held, name, ttl_ms):
    attempt = factory.create_lock(name, ttl=int(ttl_ms), retry_times=1, retry_delay=0)
    if not attempt.acquire():
        return "refused"
    held[name] = attempt
    return "ok " + attempt.lock_key


def unlock(held, name):
    held.pop(name).release()
    return "ok"


def work(factory, name, counter_url, counter_key, iterations, ttl_ms, hold_ms):
    counter = redis.StrictRedis.from_url(counter_url, socket_timeout=SOCKET_TIMEOUT_S)
    # Many short retries: contention with the other languages is the point of the run.
    mutex = factory.create_lock(name, ttl=int(ttl_ms), retry_times=400, retry_delay=40)
    successes = 0
    for _ in range(int(iterations)):
        if not mutex.acquire():
            continue
        value = int(counter.get(counter_key) or 0)
        time.sleep(int(hold_ms) / 1000)
        counter.set(counter_key, value + 1)
        mutex.release()
        successes += 1
    counter.close()
    return "done %d" % successes


def main():
    nodes = [{"url": url, "socket_timeout": SOCKET_TIMEOUT_S} for url in sys.argv[1:]]
    factory = redlock.RedLockFactory(nodes)
    held = {}
    reply("ready %s" % redlock.__VERSION__)
    for line in sys.stdin:
        try:
            command, *args = line.split()
            if command == "lock":
                reply(lock(factory, held, *args))
            elif command == "unlock":
                reply(unlock(held, *args))
            elif command == "work":
                reply(work(factory, *args))
            else:
                reply("error unknown command " + command)
        except Exception as e:  # noqa: BLE001 - every failure must reach the test
            reply("error %s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
