//! `jumpgate.storage.audit_sessions_uri`: `file://` and `s3://` in Teleport's form, checked
//! when the config is loaded (before any socket is bound), every mistake named.

// Test code: a panic is how a test reports failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use jumpgate_types::Config;
use jumpgate_types::config::{S3Sessions, SessionsStore};

fn yaml(uri: &str) -> String {
    format!("jumpgate:\n  storage:\n    audit_sessions_uri: {uri:?}\n")
}

fn store(uri: &str) -> SessionsStore {
    let config = Config::from_yaml("f", &yaml(uri)).unwrap_or_else(|e| panic!("{uri}: {e}"));
    let parsed = config.jumpgate.storage.audit_sessions_uri.unwrap();
    assert_eq!(parsed.as_str(), uri);
    parsed.store().clone()
}

fn s3(uri: &str) -> S3Sessions {
    match store(uri) {
        SessionsStore::S3(s3) => s3,
        other => panic!("{uri}: {other:?}"),
    }
}

/// The error for a bad URI: it must name the field.
fn refused(uri: &str) -> String {
    let err = Config::from_yaml("f", &yaml(uri)).unwrap_err();
    assert_eq!(
        err.field_path(),
        Some("jumpgate.storage.audit_sessions_uri"),
        "{err}"
    );
    err.to_string()
}

#[test]
fn file_uris_name_a_directory() {
    assert_eq!(
        store("file:///var/lib/jumpgate/log/records"),
        SessionsStore::File {
            dir: PathBuf::from("/var/lib/jumpgate/log/records")
        }
    );
    assert!(refused("file://relative/dir").contains("absolute directory"));
    let unset = Config::from_yaml("f", "jumpgate:\n  storage: {}\n").unwrap();
    assert_eq!(unset.jumpgate.storage.audit_sessions_uri, None);
}

#[test]
fn s3_uris_in_teleports_form() {
    let plain = s3("s3://recordings-bucket");
    assert_eq!(plain.bucket, "recordings-bucket");
    assert_eq!(plain.prefix, "");
    assert_eq!(plain.region, None);
    assert_eq!(plain.endpoint, None);
    assert!(!plain.path_style);
    assert_eq!(plain.sse, None);

    let full = s3("s3://my.bucket-1/cluster/records/?region=eu-central-1\
         &sse_kms_key=arn%3Aaws%3Akms%3Aeu-central-1%3A123456789012%3Akey%2Fabc\
         &acl=bucket-owner-full-control&use_fips_endpoint=true");
    assert_eq!(full.bucket, "my.bucket-1");
    assert_eq!(full.prefix, "cluster/records");
    assert_eq!(full.region.as_deref(), Some("eu-central-1"));
    assert_eq!(full.sse.as_deref(), Some("aws:kms"));
    assert_eq!(
        full.sse_kms_key.as_deref(),
        Some("arn:aws:kms:eu-central-1:123456789012:key/abc")
    );
    assert_eq!(full.acl.as_deref(), Some("bucket-owner-full-control"));
    assert!(full.use_fips_endpoint);

    // A custom endpoint: path-style unless asked otherwise; a bare host is https, or http
    // with insecure=true.
    let minio = s3("s3://bucket/p?endpoint=http://127.0.0.1:9000&region=us-east-1");
    assert_eq!(minio.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(minio.path_style);
    let bare = s3("s3://bucket?endpoint=minio.example.com:9000");
    assert_eq!(
        bare.endpoint.as_deref(),
        Some("https://minio.example.com:9000")
    );
    let insecure = s3("s3://bucket?endpoint=minio:9000&insecure=true");
    assert_eq!(insecure.endpoint.as_deref(), Some("http://minio:9000"));
    let virtual_style =
        s3("s3://bucket?endpoint=https://s3.example.com&use_s3_virtual_style_addressing=1");
    assert!(!virtual_style.path_style);
    assert_eq!(s3("s3://bucket?sse=AES256").sse.as_deref(), Some("AES256"));
    assert_eq!(s3("s3://bucket?disablesse=true").sse, None);
}

#[test]
fn unknown_query_parameters_are_named() {
    let err = refused("s3://bucket/p?region=us-east-1&regoin=x&colour=blue");
    assert!(err.contains("`regoin` (did you mean `region`?)"), "{err}");
    assert!(err.contains("`colour`"), "{err}");
    assert!(err.contains("known: region, endpoint"), "{err}");
    let err = refused("s3://bucket?region=us-east-1&region=us-west-2");
    assert!(err.contains("`region` is given twice"), "{err}");
}

#[test]
fn bad_buckets_and_values_are_refused_with_the_rule() {
    for (uri, expected) in [
        ("s3://", "it is empty"),
        ("s3:///prefix", "it is empty"),
        ("s3://ab", "3 to 63 characters"),
        ("s3://My_Bucket", "only lowercase letters"),
        ("s3://-bucket", "begin and end with a letter or digit"),
        ("s3://a..b", "two adjacent periods"),
        ("s3://192.168.1.10", "IP address"),
        ("s3://xn--bucket", "reserved"),
        ("s3://bucket/a/../b", "`..` segment"),
        (
            "s3://bucket?insecure=maybe",
            "`insecure` must be true or false",
        ),
        ("s3://bucket?acl=everyone", "canned ACL"),
        ("s3://bucket?sse=rot13", "`sse` must be one of"),
        ("s3://bucket?sse=AES256&sse_kms_key=k", "needs sse=aws:kms"),
        ("s3://bucket?disablesse=true&sse=AES256", "contradict"),
        ("s3://bucket?endpoint=ftp://host", "http:// or https://"),
        ("s3://bucket?region=", "`region` is empty"),
        ("s3://bucket?region=US%20East", "region name"),
        ("s3://bucket?sse_kms_key=%zz", "percent-escape"),
        ("gs://bucket/records", "unsupported scheme \"gs\""),
        ("/var/lib/records", "expected a URI"),
    ] {
        let err = refused(uri);
        assert!(err.contains(expected), "{uri}: {err}");
    }
    let long = format!("s3://{}", "a".repeat(64));
    assert!(refused(&long).contains("3 to 63"));
    s3(&format!("s3://{}", "a".repeat(63)));
}

#[test]
fn postgresql_uris_in_the_audit_events_form_never_show_the_password() {
    let uri = "postgresql://jumpgate:s3cret%23pw@db1:5432,db2/jumpgate\
               ?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/etc/pg/ca.pem";
    assert_eq!(store(uri), SessionsStore::Postgres);
    assert_eq!(store("postgres://db1/jumpgate"), SessionsStore::Postgres);
    assert_eq!(
        store("postgresql://jg@[::1]:5433/j"),
        SessionsStore::Postgres
    );
    let config = Config::from_yaml("f", &yaml(uri)).unwrap();
    let parsed = config.jumpgate.storage.audit_sessions_uri.clone().unwrap();
    assert_eq!(parsed.as_str(), uri);
    assert_eq!(
        parsed.to_string(),
        "postgresql://jumpgate@db1:5432,db2/jumpgate"
    );
    assert!(!format!("{parsed:?}").contains("s3cret"));
    assert!(!format!("{config:?}").contains("s3cret"));
    let with_query_password = store_uri("postgresql://jg@db/j?password=hunter2");
    assert_eq!(with_query_password.to_string(), "postgresql://jg@db/j");
}

fn store_uri(uri: &str) -> jumpgate_types::config::SessionsUri {
    Config::from_yaml("f", &yaml(uri))
        .unwrap()
        .jumpgate
        .storage
        .audit_sessions_uri
        .unwrap()
}

#[test]
fn malformed_postgresql_uris_are_refused_with_the_form() {
    for (uri, expected) in [
        ("postgresql://", "names no host"),
        ("postgresql:///jumpgate", "names no host"),
        ("postgresql://jg:pw@/db", "names no host"),
        ("postgresql://jg:pw@db:port/db", "must be a number"),
        ("postgresql://jg:pw@db:0/db", "must be a number"),
        ("postgresql://jg@db1,/db", "an empty host"),
        ("postgresql://:pw@db/j", "user name before '@' is empty"),
        ("postgresql://jg@db/j/k", "has a '/'"),
        ("postgresql://jg:pa#ss@db/j", "fragment"),
        ("postgresql://jg@[::1/j", "unclosed '['"),
        ("postgresql://jg@db/j?=x", "without a name"),
        ("mysql://jg@db/j", "unsupported scheme \"mysql\""),
    ] {
        let err = refused(uri);
        assert!(err.contains(expected), "{uri}: {err}");
        assert!(err.contains("postgresql://"), "{uri}: {err}");
        assert!(!err.contains(":pw@"), "{uri}: {err}");
    }
}
