"""Retry classification and backoff (plain functions; the S3 paths are exercised against real servers
in test_s3.py)."""

import pytest

from pipeline.storage import StorageError, is_transient, with_retries


def test_transient_errors_are_retried_then_succeed():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("Connection reset by peer")
        return "ok"

    assert with_retries(flaky, "op", retries=4, backoff_s=0.001) == "ok" and len(calls) == 3


def test_permanent_errors_fail_at_once_with_the_url():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("bkt/x")

    with pytest.raises(StorageError, match="read s3://bkt/x: FileNotFoundError"):
        with_retries(missing, "read s3://bkt/x", retries=4, backoff_s=0.001)
    assert len(calls) == 1


def test_retries_exhausted():
    with pytest.raises(StorageError, match="still failing after 2 retries"):
        with_retries(lambda: (_ for _ in ()).throw(TimeoutError("slow")), "op", retries=2, backoff_s=0.001)


def _s3(code: str, status: int, op: str = "PutObject") -> OSError:
    """What s3fs raises for a server error: its translation of botocore's ClientError (the cause)."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    err = ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} (test)"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        op,
    )
    try:
        raise translate_boto_error(err) from err
    except Exception as e:  # noqa: BLE001 - returned for classification
        return e


@pytest.mark.parametrize(
    "code,status,transient",
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("RequestTimeout", 400, True),
        ("ThrottlingException", 400, True),
        ("Unknown5xx", 502, True),
        ("NoSuchKey", 404, False),
        ("AccessDenied", 403, False),
        ("PreconditionFailed", 412, False),
        ("InvalidArgument", 400, False),
    ],
)
def test_classified_by_s3_error_code_and_status(code, status, transient):
    assert is_transient(_s3(code, status)) is transient


def test_network_errors_by_type():
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ConnectionResetError("Connection reset by peer"))
    assert is_transient(TimeoutError("slow"))
    assert not is_transient(PermissionError("Access Denied"))


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("wrote 503 rows for S0500"),
        OSError("bars/symbol=A500/part-0.parquet: InternalError 500"),
        FileNotFoundError("bkt/bars/symbol=S503/part-0.parquet"),
        ValueError("SlowDown: 500 symbols"),
        KeyError("ServiceUnavailable"),
    ],
)
def test_no_false_positives_from_words_in_messages(exc):
    """Regression: detection matched "500", "503", "SlowDown" in the text, so a symbol or a row count
    changed retry behaviour."""
    assert not is_transient(exc)
