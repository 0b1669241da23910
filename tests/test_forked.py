"""digest.overlap.Forked: the message builder in a forked child process.

Each scenario runs in a fresh single-threaded interpreter (a subprocess), as `digest run`
does: forking the pytest process, which may run server threads, is what Forked refuses
in production (`ahead` falls back to a thread there), so the tests do not do it either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from digest.overlap import Forked, Prefetch, ahead

ROOT = Path(__file__).resolve().parents[1]


def run(code: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_items_come_back_in_order_built_in_another_process():
    out = run("""
        import json, os
        from digest.models import OutgoingMessage
        from digest.overlap import Forked, ahead
        assert Forked.available()
        def gen():
            for i in range(2000):  # far more than the pipe holds: the child blocks and resumes
                yield i, os.getpid(), OutgoingMessage(f"d{i}", "a@x.org", "s", "<m>",
                                                      b"x" * 5000, "<p>h</p>")
        with ahead(gen()) as items:
            assert isinstance(items, Forked)
            got = list(items)
        print(json.dumps({"n": [i for i, _, _ in got], "pids": sorted({p for _, p, _ in got}),
                          "me": os.getpid(), "ok": all(m.digest_id == f"d{i}" and
                          len(m.data) == 5000 and m.html == "<p>h</p>" for i, _, m in got)}))
    """)
    assert out["n"] == list(range(2000))
    assert out["ok"]
    assert len(out["pids"]) == 1 and out["pids"] != [out["me"]]


def test_an_error_in_the_child_is_raised_in_the_parent_after_the_items_before_it():
    out = run("""
        import json
        from digest.errors import InputError
        from digest.overlap import Forked
        def gen():
            yield 1
            yield 2
            raise InputError("template broke: bad tag")
        got, err = [], None
        try:
            with Forked(gen()) as items:
                for x in items:
                    got.append(x)
        except InputError as e:
            err = str(e)
        print(json.dumps({"got": got, "err": err}))
    """)
    assert out == {"got": [1, 2], "err": "template broke: bad tag"}


def test_an_unpicklable_error_arrives_as_its_text():
    out = run("""
        import json
        from digest.overlap import Forked
        class Weird(Exception):
            def __reduce__(self):
                raise TypeError("no pickling")
        def gen():
            yield 1
            raise Weird("odd failure")
        try:
            with Forked(gen()) as items:
                list(items)
        except RuntimeError as e:
            print(json.dumps({"err": str(e)}))
    """)
    assert "Weird: odd failure" in out["err"]


def test_a_child_that_dies_ends_the_run_with_one_line():
    out = run("""
        import json, os, signal
        from digest.errors import DigestError
        from digest.overlap import Forked
        def gen():
            yield 1
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, say
            yield 2
        got, err = [], None
        try:
            with Forked(gen()) as items:
                for x in items:
                    got.append(x)
        except DigestError as e:
            err = str(e)
        print(json.dumps({"got": got, "err": err}))
    """)
    assert out["got"] == [1]
    assert "message builder process stopped unexpectedly (killed by signal 9)" in out["err"]
    assert "\n" not in out["err"]


def test_leaving_early_kills_and_reaps_the_child_and_it_held_no_descriptor():
    out = run("""
        import json, os
        from digest.overlap import Forked
        keep = os.dup2(os.open(os.devnull, os.O_RDONLY), 50)  # like the store's lock file
        def gen():
            yield sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
            for i in range(10**9):
                yield i
        f = Forked(gen())
        with f as items:
            it = iter(items)
            fds = next(it)
            next(it)
            pid = f._pid
        try:
            os.waitpid(pid, os.WNOHANG)
            reaped = False
        except ChildProcessError:
            reaped = True
        print(json.dumps({"fds": fds, "keep": keep, "reaped": reaped}))
    """)
    assert out["reaped"]
    assert out["keep"] not in out["fds"]  # inherited descriptors are closed in the child
    assert len([fd for fd in out["fds"] if fd > 2]) <= 2  # the pipe (+ listdir's own)


def test_a_starved_child_is_replaced_by_building_here_without_losing_an_item():
    # The watch decides "starving" at the 10th item (what a busy box would make it say):
    # no sleeps, no machine speed in the test.
    out = run("""
        import json, os
        from digest.overlap import Forked, Starvation
        class AtTen(Starvation):
            def observe(self, asked, got):
                super().observe(asked, got)
                self.n = getattr(self, "n", 0) + 1
                return self.n >= 10
        parent = os.getpid()
        f = Forked(((i, os.getpid()) for i in range(40)), watch=AtTen(),
                   promote=lambda pid: False)  # as for a process without the privilege
        with f as items:
            got = list(items)
        print(json.dumps({"n": [i for i, _ in got], "starved": f.starved,
                          "here": [i for i, p in got if p == parent]}))
    """)
    assert out["n"] == list(range(40))  # every item once, in order
    assert out["starved"]
    assert out["here"] == list(range(10, 40))  # the child delivered 10, this process the rest


def test_a_starving_child_is_first_moved_to_the_normal_priority():
    out = run("""
        import json, os
        from digest.overlap import Forked, Starvation
        class AtTen(Starvation):
            def observe(self, asked, got):
                self.n = getattr(self, "n", 0) + 1
                return self.n == 10
        parent = os.getpid()
        def policy():
            return os.sched_getscheduler(0)
        # 400 KB items: the pipe holds a few, so the last ones are made after item 10
        f = Forked(((i, os.getpid(), policy(), b"x" * 400_000) for i in range(40)),
                   watch=AtTen())
        with f as items:
            got = [x[:3] for x in items]
        from digest.overlap import _may_leave_idle
        print(json.dumps({"n": [i for i, _, _ in got], "promoted": f.promoted,
                          "starved": f.starved, "here": sum(p == parent for _, p, _ in got),
                          "first": got[0][2], "last": got[-1][2], "may": _may_leave_idle(),
                          "idle": os.SCHED_IDLE, "other": os.SCHED_OTHER}))
    """)
    assert out["n"] == list(range(40))  # every item once, in order, either way
    # idle priority only where the child can be moved back (else normal from the start)
    assert out["first"] == (out["idle"] if out["may"] else out["other"])
    if out["promoted"]:  # allowed here (root, or RLIMIT_NICE): it went on at normal priority
        assert out["last"] == out["other"] and not out["starved"] and out["here"] == 0
    else:  # not allowed: the rest was built here
        assert out["starved"] and out["here"] == 30


def test_a_promoted_child_builds_the_rest_however_long_it_keeps_the_parent_waiting():
    # Once at the normal priority, a wait means a busy box: building here would not help
    # and would rebuild every item already taken (three workers on two cores).
    out = run("""
        import json, os
        from digest.overlap import Forked, Starvation
        class AlwaysStarving(Starvation):
            def observe(self, asked, got):
                self.n = getattr(self, "n", 0) + 1
                return True
        parent = os.getpid()
        promoted = []
        f = Forked(((i, os.getpid()) for i in range(50)), watch=AlwaysStarving(),
                   promote=lambda pid: promoted.append(pid) or True)
        with f as items:
            got = list(items)
        print(json.dumps({"n": [i for i, _ in got], "here": sum(p == parent for _, p in got),
                          "promoted": f.promoted, "starved": f.starved,
                          "promotions": len(promoted), "watched": f.watch.n}))
    """)
    assert out["n"] == list(range(50)) and out["here"] == 0
    assert out["promoted"] and not out["starved"]
    assert out["promotions"] == 1 and out["watched"] == 1  # not watched once promoted


def test_a_child_that_could_not_be_moved_back_starts_at_the_normal_priority():
    # A non-root service or a default Docker container (no CAP_SYS_NICE): an idle child
    # could never be promoted, so it starts at the normal priority and is never replaced.
    out = run("""
        import json, os
        from digest.overlap import Forked, Starvation
        class AlwaysStarving(Starvation):
            def observe(self, asked, got):
                raise AssertionError("a child at the normal priority is not watched")
        parent = os.getpid()
        f = Forked(((i, os.getpid(), os.sched_getscheduler(0)) for i in range(30)),
                   watch=AlwaysStarving(), idle=False)
        with f as items:
            got = list(items)
        print(json.dumps({"n": [i for i, _, _ in got], "here": sum(p == parent for _, p, _ in got),
                          "policies": sorted({p for _, _, p in got}), "other": os.SCHED_OTHER,
                          "promoted": f.promoted, "starved": f.starved}))
    """)
    assert out["n"] == list(range(30)) and out["here"] == 0
    assert out["policies"] == [out["other"]] and out["promoted"] and not out["starved"]


def test_a_child_that_keeps_up_is_never_taken_for_starved():
    # The clock moves only when the consumer works (1 ms per item): the waits for the
    # child take no time on it, so however slow this machine is, nothing is starving. Were
    # the consumer's own time counted as waiting, this would be starved after 0.2 s.
    out = run("""
        import json
        from digest.overlap import Forked, Starvation
        class Clock:
            t = 0.0
            def __call__(self):
                return self.t
        clock = Clock()
        f = Forked(iter(range(20000)), clock=clock, watch=Starvation(after=0.2))
        n = 0
        with f as items:
            for _ in items:
                n += 1
                clock.t += 0.001
        print(json.dumps({"n": n, "starved": f.starved, "waited": f.watch.waited}))
    """)
    assert out == {"n": 20000, "starved": False, "waited": 0.0}


def test_starvation_needs_both_the_total_and_the_share_and_ignores_start_up():
    from digest.overlap import Starvation

    def feed(watch: Starvation, items: int, wait: float, work: float, t: float = 0.0) -> int:
        """`items` items, each waited for `wait` then worked on for `work`: the 1-based
        item at which the watch first says starving (0: never)."""
        for i in range(1, items + 1):
            asked, t = t, t + wait
            if watch.observe(asked, t):
                return i
            t += work
        return 0

    assert feed(Starvation(), 100_000, wait=0.0001, work=0.001) == 0  # keeps up
    # starving: 30 ms waits, 1 ms of work; starving once over 2 s were waited: 67 waits,
    # after the first item's (start-up)
    assert feed(Starvation(), 1000, wait=0.03, work=0.001) == 68
    # a long first wait (start-up: ranking the first subscribers) counts for nothing
    w = Starvation()
    assert not w.observe(0.0, 30.0) and w.waited == 0.0
    assert feed(w, 1000, wait=0.0001, work=0.001, t=30.0) == 0
    # much waiting in total, but a small share of a long run: not starving
    w = Starvation(after=2.0, share=0.3)
    assert feed(w, 10_000, wait=0.0005, work=0.004) == 0 and w.waited > 2.0


def test_ahead_uses_a_thread_when_other_threads_run():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        assert not Forked.available()
        with ahead(iter(range(10))) as items:
            assert isinstance(items, Prefetch)
            assert list(items) == list(range(10))
    finally:
        stop.set()
        t.join()


FED = """
    import json, os
    from digest.overlap import Feed, Forked, Starvation
    parent = os.getpid()
    sizes = [7, 0, 12, 5]  # an empty batch is no end: only None ends the feed
    pulled = []

    def pull():
        pulled.append(os.getpid())
        return list(range(sum(sizes[: len(pulled) - 1]), sum(sizes[: len(pulled)]))) \\
            if len(pulled) <= len(sizes) else None

    built_here, skips = [], []

    def make(get, skip):
        if os.getpid() == parent:
            skips.append(skip)
        i, n = 0, 0
        while (batch := get(i)) is not None:
            for x in batch:
                if n >= skip:
                    if os.getpid() == parent:
                        built_here.append(x)
                    yield x, os.getpid()
                n += 1
            i += 1
"""


def test_a_fed_child_builds_every_batch_in_order_each_claimed_once_by_the_parent():
    out = run(
        FED
        + """
    f = Forked(make, feed=Feed(pull))
    with f as items:
        got = list(items)
    print(json.dumps({"n": [x for x, _ in got], "here": sum(p == parent for _, p in got),
                      "pulled": pulled, "parent": parent, "skips": skips}))
    """
    )
    assert out["n"] == list(range(24)) and out["here"] == 0
    # every batch (and the final None) pulled once, in the parent (its feeder thread)
    assert out["pulled"] == [out["parent"]] * 5 and out["skips"] == []


def test_a_starved_fed_child_is_replaced_here_without_building_again_what_was_taken():
    out = run(
        FED
        + """
    class AtTen(Starvation):
        def observe(self, asked, got):
            self.n = getattr(self, "n", 0) + 1
            return self.n == 10
    f = Forked(make, feed=Feed(pull), watch=AtTen(), promote=lambda pid: False)
    with f as items:
        got = list(items)
    print(json.dumps({"n": [x for x, _ in got], "starved": f.starved, "skips": skips,
                      "built_here": built_here, "pulls": len(pulled)}))
    """
    )
    assert out["n"] == list(range(24)) and out["starved"]
    assert out["skips"] == [10] and out["built_here"] == list(range(10, 24))
    assert out["pulls"] == 5  # the feed kept the batches: none claimed twice
