"""Print an MLflow experiment's traces as JSON (run with the MLflow environment's Python).

Usage: python mlflow_read.py TRACKING_URI EXPERIMENT_ID
"""

import json
import sys

from mlflow import MlflowClient


def main() -> None:
    client = MlflowClient(tracking_uri=sys.argv[1])
    result = []
    for found in client.search_traces(locations=[sys.argv[2]], max_results=500):
        trace = client.get_trace(found.info.trace_id)
        info = trace.info
        result.append(
            {
                "info": {
                    "trace_id": info.trace_id,
                    "request_preview": info.request_preview,
                    "response_preview": info.response_preview,
                    "state": str(info.state),
                    "token_usage": info.token_usage,
                },
                "spans": [
                    {
                        "name": span.name,
                        "span_id": span.span_id,
                        "parent_id": span.parent_id,
                        "span_type": span.span_type,
                        "inputs": span.inputs,
                        "outputs": span.outputs,
                        "attributes": span.attributes,
                    }
                    for span in trace.data.spans
                ],
            }
        )
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main()
