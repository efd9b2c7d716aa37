"""The console bench's profile summaries: where a profile says the time went."""

from __future__ import annotations

import pytest

from citypilot.console.profile import summary, trace_summary


def _node(node_id: int, name: str, url: str = "", line: int = -1) -> dict:
    """A profile node as V8 writes it (line numbers from 0; -1 for its pseudo-functions)."""
    return {"id": node_id, "callFrame": {"functionName": name, "url": url, "lineNumber": line}}


def test_a_cpu_profile_is_split_into_idle_native_and_each_function():
    profile = {
        "nodes": [
            _node(1, "(idle)"),
            _node(2, "(program)"),
            _node(3, "render", "http://x/assets/index-abc.js", 9),
            _node(4, "(garbage collector)"),
        ],
        # 1 ms idle, 6 ms native, 2.5 ms in render, 0.5 ms collecting garbage
        "samples": [1, 2, 2, 3, 2, 3, 4],
        "timeDeltas": [1000, 3000, 3000, 2000, 0, 500, 500],
    }
    got = summary(profile)
    assert got["profiled_ms"] == 10
    assert got["busy_percent"] == pytest.approx(90.0)
    assert got["by_origin_ms"] == {
        "(program)": 6,
        "console bundle (console code + MapLibre main thread)": 2,
        "(garbage collector)": 0,
    }
    assert got["top_self_ms"][0] == {"function": "(program)", "file": "", "line": 0, "ms": 6}
    assert got["top_self_ms"][1]["function"] == "render"
    assert got["top_self_ms"][1]["file"] == "index-abc.js" and got["top_self_ms"][1]["line"] == 10


def test_a_trace_counts_each_threads_outermost_events_not_their_wrappers():
    def x(tid: int, name: str, ts: float, dur: float) -> dict:
        return {"ph": "X", "pid": 1, "tid": tid, "name": name, "ts": ts, "dur": dur}

    trace = {
        "traceEvents": [
            {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "Renderer"}},
            {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Main"}},
            {"ph": "M", "pid": 1, "tid": 8, "name": "thread_name", "args": {"name": "GPU"}},
            x(7, "ThreadControllerImpl::RunTask", 0, 10_000),  # a wrapper: its children count
            x(7, "BeginMainFrame", 0, 6_000),
            x(7, "Paint", 1_000, 2_000),  # inside BeginMainFrame: not counted again
            x(7, "TimerBase::run", 7_000, 1_000),
            x(8, "Scheduler::RunTask", 0, 3_000),
        ]
    }
    got = trace_summary(trace)
    assert got["wall_ms"] == 10
    main, gpu = got["threads"]
    assert main == {
        "thread": "Renderer/Main",
        "busy_ms": 7,
        "top_ms": {"BeginMainFrame": 6, "TimerBase::run": 1},
    }
    assert gpu["thread"] == "Renderer/GPU" and gpu["busy_ms"] == 3
