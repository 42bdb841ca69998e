"""Worker and simulator processes freeze their boot heap out of the collector's scans (docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

import dramatiq

from controlpanel import worker_heap
from controlpanel.worker_heap import FreezeBootHeap
from whatsapp.simulator import callbacks, standalone


def test_the_configured_broker_freezes_after_a_worker_process_boots():
    assert any(isinstance(m, FreezeBootHeap) for m in dramatiq.get_broker().middleware)


def test_a_booted_worker_process_freezes_what_is_loaded_and_keeps_no_garbage():
    # In a child interpreter: freezing the test process's heap would outlive this test.
    code = (
        "import gc, weakref\n"
        "from controlpanel.worker_heap import FreezeBootHeap\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.b, b.a = b, a; gone = weakref.ref(a); del a, b\n"  # a cycle, garbage
        "before = gc.get_freeze_count()\n"
        "heap = FreezeBootHeap()\n"
        "heap.before_worker_boot(None, None)  # a worker started in a process that did not boot: serve\n"
        "assert gc.get_freeze_count() == before\n"
        "heap.after_process_boot(None)\n"
        "heap.before_worker_boot(None, None)\n"
        "assert gc.get_freeze_count() > before + 1000, (before, gc.get_freeze_count())\n"
        "assert gone() is None  # collected before the freeze, not kept forever\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_standalone_simulator_freezes_once_started(monkeypatch):
    frozen = []
    monkeypatch.setattr(worker_heap, "freeze_boot_heap", lambda: frozen.append(True) or 1)
    monkeypatch.setattr(callbacks, "ensure_pump", lambda: None)
    standalone.started()
    assert frozen == [True]
