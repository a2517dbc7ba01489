"""A real S3 API for tests: moto's server mode on a free localhost port, with one bucket.

``s3_server()`` yields the environment an app (or a test) needs to use it as the workbench's
object storage; the same variables work against MinIO or AWS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

BUCKET = "saliency-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def s3_server(prefix: str = "workbench") -> Iterator[dict[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**CREDENTIALS, "SALIENCY_S3_BUCKET": BUCKET, "SALIENCY_S3_PREFIX": prefix,
           "SALIENCY_S3_ENDPOINT_URL": endpoint}
    try:
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1"
                     ).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.stop()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the block and restore what was there before."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
