"""Tests of metrics, health endpoints, tracing, logs, live views and flow graphs."""
