"""Parses Prometheus text exposition on stdin with the official Python client's
parser and prints every sample as one JSON object per line. Used by the Rust
integration tests as an independent, real parser."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"family": family.name, "type": family.type,
                          "name": s.name, "labels": s.labels, "value": s.value}))
