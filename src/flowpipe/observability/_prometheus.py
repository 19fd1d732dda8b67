"""The flow's metric families as a prometheus_client collector, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ._collect import Buckets, Family

__all__ = ["FlowCollector", "make_registry"]


class FlowCollector(Collector):
    """Renders ``families()`` (see :func:`._collect.collect`) in Prometheus' data model."""

    def __init__(self, families: Callable[[], list[Family]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for family in self._families():
            yield _metric(family)


def _metric(family: Family) -> Metric:
    name, labels = family.prometheus_name, list(family.label_names)
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(name, family.help, labels=labels)
        for values, buckets in family.samples:
            assert isinstance(buckets, Buckets)
            cumulative, running = [], 0
            for bound, count in zip((*buckets.bounds, float("inf")), buckets.counts, strict=True):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
            histogram.add_metric(list(values), cumulative, sum_value=buckets.total)
        return histogram
    metric = (CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily)(
        name, family.help, labels=labels
    )
    for values, value in family.samples:
        assert not isinstance(value, Buckets)
        metric.add_metric(list(values), value)
    return metric


def make_registry(collector: FlowCollector, process: bool) -> CollectorRegistry:
    """A registry of the flow's metrics and, when ``process``, the process' own (memory, CPU, GC)."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry
