"""The benchmark's Python Celery app (solo pool): the same no-op task, same name and queue."""
import os

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
