"""Classification of single lines: real-looking Supabase/PostgREST, Postgres and Next.js logs."""

from __future__ import annotations

import json

import pytest

from migration_watch.logs.classify import (
    BLANK,
    ERROR,
    FALLBACK,
    LEGACY_ERROR,
    LEGACY_REFERENCE,
    NEW_REFERENCE,
    PARSE_ERROR,
    TRUNCATED,
    Classifier,
    Counts,
    Samples,
    redact,
)
from migration_watch.logs.config import ClassesConfig, FieldsConfig

NAMES = {
    ERROR: "error",
    LEGACY_REFERENCE: "legacy_reference",
    NEW_REFERENCE: "new_reference",
    LEGACY_ERROR: "legacy_error",
    FALLBACK: "fallback",
    PARSE_ERROR: "parse_error",
    TRUNCATED: "truncated",
    BLANK: "blank",
}


def classes_of(classifier: Classifier, line: str | bytes) -> set[str]:
    """The classes of one line, by both the per-line and the chunk path (which must agree)."""
    raw = line.encode() if isinstance(line, str) else line
    flags = classifier.classify_line(raw)
    per_line = {name for flag, name in NAMES.items() if flags & flag}
    counts = Counts()
    classifier.scan(raw + b"\n", counts)
    by_chunk = {k for k, v in counts.to_dict().items() if v and k not in ("lines", "bytes")}
    by_chunk = {"parse_error" if k == "parse_errors" else k for k in by_chunk}
    assert counts.lines == 1
    assert counts.bytes == len(raw) + 1
    assert by_chunk == per_line - {"blank"}, (line, per_line, by_chunk)
    if classifier.native:  # the msgspec chunk path (no C extension) agrees as well
        msgspec_counts = Counts()
        classifier._scan_adaptive(raw + b"\n", msgspec_counts, None)
        assert msgspec_counts == counts, (line, msgspec_counts, counts)
    return per_line


@pytest.fixture
def pino() -> Classifier:
    """A Next.js app logging with pino (numeric levels, ``msg``)."""
    return Classifier("customer_id", "organization_id", fields=FieldsConfig(message="msg"))


# --------------------------------------------------------------------------- Next.js / pino


def test_nextjs_request_log_is_nothing(pino: Classifier) -> None:
    line = json.dumps(
        {
            "level": 30,
            "time": 1761210000123,
            "pid": 7,
            "hostname": "web-1",
            "req": {"method": "GET", "url": "/dashboard"},
            "res": {"statusCode": 200},
            "responseTime": 35,
            "msg": "request completed",
        }
    )
    assert classes_of(pino, line) == set()


def test_pino_error_with_legacy_column_counts_three_times(pino: Classifier) -> None:
    line = json.dumps(
        {
            "level": 50,
            "time": 1761210000123,
            "err": {
                "type": "PostgrestError",
                "message": "column conversations.customer_id does not exist",
                "code": "42703",
            },
            "msg": "failed to load conversations",
        }
    )
    assert classes_of(pino, line) == {"error", "legacy_reference", "legacy_error"}


def test_pino_fatal_and_string_levels(pino: Classifier) -> None:
    assert classes_of(pino, '{"level":60,"msg":"boom"}') == {"error"}
    assert classes_of(pino, '{"level":"ERROR","msg":"boom"}') == {"error"}
    assert classes_of(pino, '{"level":"Fatal","msg":"boom"}') == {"error"}
    assert classes_of(pino, '{"level":"warn","msg":"slow"}') == set()
    assert classes_of(pino, '{"level":"eRRoR","msg":"mixed case is not a level"}') == set()


def test_status_5xx_is_an_error(pino: Classifier) -> None:
    assert classes_of(pino, '{"level":"info","status":503,"msg":"upstream"}') == {"error"}
    assert classes_of(pino, '{"level":"info","status":"500","msg":"as text"}') == {"error"}
    assert classes_of(pino, '{"level":"info","status":499,"msg":"client closed"}') == set()
    assert classes_of(pino, '{"level":"info","status":600,"msg":"not http"}') == set()
    assert classes_of(pino, '{"level":"info","status":true,"msg":"odd"}') == set()


def test_object_valued_level_is_not_an_error_and_not_a_parse_error(pino: Classifier) -> None:
    assert classes_of(pino, '{"level":{"name":"error"},"status":[500],"msg":"x"}') == set()


def test_fallback_path(pino: Classifier) -> None:
    line = '{"level":"warn","msg":"organization_id missing, fell back to customer_id"}'
    assert classes_of(pino, line) == {"legacy_reference", "new_reference", "fallback"}
    # The default requires the legacy column: Next.js' own "fallback" is not the app's.
    assert classes_of(pino, '{"level":"info","msg":"getStaticPaths fallback: blocking"}') == set()
    anywhere = Classifier(
        "customer_id",
        "organization_id",
        ClassesConfig(fallback_requires_legacy=False, fallback=("used fallback query",)),
        fields=FieldsConfig(message="msg"),
    )
    assert classes_of(anywhere, '{"msg":"used fallback query for org"}') == {"fallback"}


# --------------------------------------------------------------------------- PostgREST / SQL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/rest/v1/conversations?select=*&customer_id=eq.42", {"legacy_reference"}),
        ("/rest/v1/conversations?organization_id=eq.7&order=created_at.desc", {"new_reference"}),
        (
            "/rest/v1/conversations?or=(organization_id.eq.7,customer_id.eq.42)",
            {"legacy_reference", "new_reference"},
        ),
        ("SELECT * FROM conversations c WHERE c.customer_id = $1", {"legacy_reference"}),
        ('UPDATE "conversations" SET "organization_id" = $1', {"new_reference"}),
        ("old_customer_id=eq.1", set()),
        ("customer_ids=in.(1,2)", set()),
        ("xcustomer_id", set()),
        ("customer_id_old", set()),
        ("CUSTOMER_ID = 1", set()),  # case-sensitive, as configured
        ("line one\ncustomer_id on the next line", {"legacy_reference"}),  # \n escape
        ("tab\tcustomer_id", {"legacy_reference"}),
        ("accent \u00e9customer_id", {"legacy_reference"}),  # non-ASCII separates
    ],
)
def test_column_reference_forms(pino: Classifier, text: str, expected: set[str]) -> None:
    assert classes_of(pino, json.dumps({"level": "info", "msg": text})) == expected
    assert (
        classes_of(pino, json.dumps({"level": "info", "msg": text}, ensure_ascii=False)) == expected
    )


def test_unicode_escape_of_identifier_character_joins(pino: Classifier) -> None:
    # "\u0041customer_id" decodes to "Acustomer_id": not the column.
    assert classes_of(pino, '{"msg":"\\u0041customer_id"}') == set()
    assert classes_of(pino, '{"msg":"\\u0020customer_id"}') == {"legacy_reference"}
    assert classes_of(pino, '{"msg":"\\\\ncustomer_id"}') == set()  # "\\n" is a backslash + n


def test_unicode_escape_ending_like_a_short_escape_separates() -> None:
    # "\u00eb" (e with diaeresis) ends with "b" but is not "\b"; "\u002f" is "/".
    # python's json.dumps escapes every non-ASCII character this way.
    in_msg = FieldsConfig(search=("msg",))
    for name, classifier in (
        ("whole line", Classifier("customer_id", "organization_id")),
        ("fields", Classifier("customer_id", "organization_id", fields=in_msg)),
    ):
        for escape in ("\\u00eb", "\\u00ab", "\\u00AB", "\\u002f", "\\u00e9"):
            line = '{"msg":"' + escape + 'customer_id"}'
            assert classes_of(classifier, line) == {"legacy_reference"}, (name, line)
        assert classes_of(classifier, '{"msg":"\\\\u00ebcustomer_id"}') == set(), name


def test_json_key_reference(pino: Classifier) -> None:
    line = '{"level":"info","msg":"insert","row":{"customer_id":42,"name":"x"}}'
    assert classes_of(pino, line) == {"legacy_reference"}


def test_supabase_edge_log(pino: Classifier) -> None:
    """Supabase's API gateway log: message and nested metadata, searched as text."""
    supabase = Classifier(
        "customer_id",
        "organization_id",
        fields=FieldsConfig(message="event_message", level="level", search=("metadata",)),
    )
    line = json.dumps(
        {
            "event_message": "GET | 500 | 203.0.113.9 | 8b1c | https://abc.supabase.co/rest/v1/"
            "conversations?select=*&customer_id=eq.42 | node-fetch",
            "id": "0f7f6f1e-1c2b-4d51-9f51-0cbb0b0c2b9d",
            "metadata": [
                {
                    "request": [{"method": "GET", "path": "/rest/v1/conversations"}],
                    "response": [{"status_code": 500}],
                }
            ],
            "timestamp": 1761210000123000,
        }
    )
    # No top-level level/status: not an error by these fields.
    assert classes_of(supabase, line) == {"legacy_reference"}


def test_postgres_log_via_supabase_fields() -> None:
    pg = Classifier(
        "customer_id",
        "organization_id",
        fields=FieldsConfig(level="error_severity", message="event_message", search=("query",)),
    )
    line = json.dumps(
        {
            "event_message": 'column "customer_id" does not exist',
            "error_severity": "ERROR",
            "query": "select * from conversations where customer_id = $1",
            "sql_state_code": "42703",
            "timestamp": 1761210000123000,
        }
    )
    assert classes_of(pg, line) == {"error", "legacy_reference", "legacy_error"}
    log_line = json.dumps({"event_message": "connection received", "error_severity": "LOG"})
    assert classes_of(pg, log_line) == set()


def test_search_fields_restrict_where_columns_count() -> None:
    c = Classifier(
        "customer_id",
        "organization_id",
        fields=FieldsConfig(message="msg", search=("sql", "url")),
    )
    assert classes_of(c, '{"msg":"ok","sql":"SELECT customer_id FROM t"}') == {"legacy_reference"}
    assert classes_of(c, '{"msg":"ok","url":"/rest/v1/t?organization_id=eq.1"}') == {
        "new_reference"
    }
    assert classes_of(c, '{"msg":"customer_id in the message"}') == {"legacy_reference"}
    # A column mentioned only in a field that is not searched does not count.
    assert classes_of(c, '{"msg":"ok","customer_id":42,"ctx":"customer_id"}') == set()
    assert classes_of(c, '{"msg":"ok","sql":null,"url":42}') == set()
    # The whole line is the default.
    whole = Classifier("customer_id", "organization_id", fields=FieldsConfig(message="msg"))
    assert classes_of(whole, '{"msg":"ok","customer_id":42}') == {"legacy_reference"}


# --------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize(
    "line",
    [
        '{"msg":"woocommerce webhook","payload":{"customer_id":17}}',
        '{"msg":"sync","url":"https://shop.example/wp-json/wc/v3/orders?customer_id=17"}',
        '{"msg":"sync","url":"https:\\/\\/shop.example\\/wp-json\\/wc\\/v3\\/customers\\/17","customer_id":17}',
        '{"msg":"WooCommerce order imported","customer_id":17,"level":"error"}',
    ],
)
def test_woocommerce_customer_id_is_not_the_migrated_column(pino: Classifier, line: str) -> None:
    found = classes_of(pino, line)
    assert "legacy_reference" not in found
    assert "legacy_error" not in found


def test_exclusion_does_not_stop_new_references_or_errors(pino: Classifier) -> None:
    line = '{"level":"error","msg":"woocommerce sync failed for organization_id 7, customer_id 17"}'
    assert classes_of(pino, line) == {"error", "new_reference"}


def test_exclusions_are_configurable() -> None:
    c = Classifier("customer_id", "organization_id", ClassesConfig(exclude=()))
    assert classes_of(c, '{"message":"woocommerce","customer_id":1}') == {"legacy_reference"}
    c = Classifier("customer_id", "organization_id", ClassesConfig(exclude=("/stripe/",)))
    assert classes_of(c, '{"message":"/stripe/ webhook customer_id"}') == set()


# --------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    "line",
    [
        b'{"level":"error","msg":"customer_id"',  # cut
        b'{"level":"error",,}',
        b"[1,2,3]",
        b'"just a string with customer_id"',
        b"Error: connect ECONNREFUSED 127.0.0.1:5432 customer_id",
        b'{"msg":"a"}{"msg":"b"}',
        b'{"msg":"nul \x00 inside"}',
        b'{"msg":"\xff\xfe invalid utf-8 customer_id"}',
        b'{"msg":"ok"}\x00',
        b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"a":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    ],
)
def test_parse_errors_get_no_other_class(pino: Classifier, line: bytes) -> None:
    assert classes_of(pino, line) == {"parse_error"}


def test_moderate_nesting_is_fine(pino: Classifier) -> None:
    line = b'{"level":"error","a":' + b'{"customer_id":' * 100 + b"1" + b"}" * 100 + b"}"
    assert classes_of(pino, line) == {"error", "legacy_reference", "legacy_error"}


def test_blank_lines_are_just_lines(pino: Classifier) -> None:
    for line in (b"", b"   ", b"\t", b"\r"):
        assert classes_of(pino, line) == {"blank"}


def test_crlf_line_endings(pino: Classifier) -> None:
    assert classes_of(pino, b'{"level":"error","msg":"customer_id"}\r') == {
        "error",
        "legacy_reference",
        "legacy_error",
    }


# --------------------------------------------------------------------------- truncation


def test_overlong_line_is_truncated_and_classified_on_its_first_part() -> None:
    c = Classifier(
        "customer_id", "organization_id", fields=FieldsConfig(message="msg"), max_line_bytes=256
    )
    head = '{"level":"error","status":500,"msg":"customer_id failed","blob":"'
    line = head + "x" * 1000 + '"}'
    assert classes_of(c, line) == {"truncated", "error", "legacy_reference", "legacy_error"}
    late = '{"level":"info","blob":"' + "x" * 1000 + '","msg":"customer_id"}'
    assert classes_of(c, late) == {"truncated"}
    # A multi-byte character cut by the limit is not a parse error.
    cut = ('{"level":"info","msg":"' + "é" * 400 + '"}').encode()
    assert cut[:256].decode("utf-8", "ignore").encode() != cut[:256]
    assert classes_of(c, cut) == {"truncated"}
    # But invalid UTF-8 inside the first part is.
    assert classes_of(c, b'{"msg":"\xff' + b"x" * 400 + b'"}') == {"truncated", "parse_error"}


# --------------------------------------------------------------------------- other formats


def test_logfmt() -> None:
    c = Classifier(
        "customer_id",
        "organization_id",
        format="logfmt",
        fields=FieldsConfig(message="msg", search=("query",)),
    )
    line = (
        'ts=2025-10-23T09:00:00Z level=error msg="query failed" '
        'query="select * from t where customer_id = $1" status=500'
    )
    assert classes_of(c, line) == {"error", "legacy_reference", "legacy_error"}
    assert classes_of(c, 'level=info msg="fine" other="customer_id"') == set()
    assert classes_of(c, 'level=info msg="unterminated') == {"parse_error"}
    assert classes_of(c, "plain text without pairs") == {"parse_error"}
    assert classes_of(c, 'level=warn msg="organization_id missing, fell back to customer_id"') == {
        "legacy_reference",
        "new_reference",
        "fallback",
    }


def test_text_regex() -> None:
    c = Classifier(
        "customer_id",
        "organization_id",
        format="text",
        regex=r"^(?P<time>\S+) \[(?P<level>\w+)\] (?P<status>\d{3})? ?(?P<message>.*)$",
    )
    assert classes_of(c, "2025-10-23T09:00:00Z [ERROR] 500 GET /rest/v1/t?customer_id=eq.1") == {
        "error",
        "legacy_reference",
        "legacy_error",
    }
    assert classes_of(c, "2025-10-23T09:00:00Z [INFO] organization_id=eq.1") == {"new_reference"}
    assert classes_of(c, "no match here customer_id") == {"parse_error"}


def test_text_regex_required() -> None:
    with pytest.raises(ValueError, match="regex"):
        Classifier("customer_id", "organization_id", format="text")


def test_invalid_columns() -> None:
    with pytest.raises(ValueError, match="differ"):
        Classifier("customer_id", "customer_id")
    with pytest.raises(ValueError, match="invalid column"):
        Classifier("customer id", "organization_id")


# --------------------------------------------------------------------------- counts, samples


def test_counts_arithmetic() -> None:
    a = Counts(lines=3, bytes=30, error=1, legacy_reference=2)
    b = Counts(lines=1, bytes=10, error=1, parse_errors=1)
    assert (a + b).to_dict()["lines"] == 4
    assert (a + b - b) == a
    assert Counts.from_dict(a.to_dict()) == a
    assert list(a.classes()) == [
        "error",
        "legacy_reference",
        "new_reference",
        "legacy_error",
        "fallback",
    ]
    c = a.copy()
    c.add(b)
    assert c == a + b
    assert a.lines == 3


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "c2lnbmF0dXJl"),
        ("connect postgresql://app:s3cr3t-pw@db.example.com:5432/app failed", "s3cr3t-pw"),
        ("GET /rest/v1/t?apikey=sb_secret_abcdef123&select=*", "sb_secret_abcdef123"),
        ('{"password":"hunter2","user":"x"}', "hunter2"),
        ("token=abc.def.ghi rest", "abc.def.ghi"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.abcd1234", "abcd1234"),
        ('{\\"apikey\\":\\"k3y-value\\"}', "k3y-value"),
    ],
)
def test_redaction(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[REDACTED]" in redact(text)


def test_samples_are_bounded_redacted_and_truncated() -> None:
    c = Classifier(
        "customer_id",
        "organization_id",
        ClassesConfig(samples=2, sample_chars=60),
        fields=FieldsConfig(message="msg"),
    )
    samples = Samples(2, 60)
    lines = [
        f'{{"level":"error","msg":"customer_id failed {i}","dsn":"postgres://u:pw{i}@h/db"}}'
        for i in range(5)
    ]
    c.scan(("\n".join(lines) + "\n").encode(), Counts(), samples)
    got = samples.get("legacy_error")
    assert len(got) == 2
    assert "failed 3" in got[0]
    assert "failed 4" in got[1]
    assert all(len(s) <= 60 for s in got)
    assert not any("pw4" in s or "pw3" in s for s in samples.get("error"))
    assert set(samples.snapshot()) == {"error", "legacy_reference", "legacy_error"}


def test_one_key_for_level_and_status() -> None:
    # A config naming the same key twice used to fail on every line.
    same = Classifier("customer_id", "organization_id", fields=FieldsConfig(level="s", status="s"))
    assert classes_of(same, '{"s":503}') == {"error"}
    assert classes_of(same, '{"s":"ERROR"}') == {"error"}
    assert classes_of(same, '{"s":"info","msg":"customer_id"}') == {"legacy_reference"}
