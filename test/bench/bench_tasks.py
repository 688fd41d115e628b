"""The benchmark's Python Celery app: the same no-op and 5 ms CPU tasks, same names and queue."""
import os
import time

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER"], backend=os.environ.get("BENCH_BACKEND") or None)
app.conf.update(task_default_queue=os.environ["BENCH_QUEUE"], worker_hijack_root_logger=False,
                task_ignore_result=os.environ.get("BENCH_RESULTS") != "on")


@app.task(name="bench.add")
def add(a, b):
    return a + b


@app.task(name="bench.total")
def total(xs):
    return sum(xs)


@app.task(name="bench.cpu5")
def cpu5(a, b):
    end = time.perf_counter() + 0.005
    while time.perf_counter() < end:
        pass
    return a + b
