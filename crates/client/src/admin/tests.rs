#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::text::{
    events_table, join_token_text, join_tokens_table, nodes_table, rotation_text, status_text,
    table, time_text, users_table,
};
use super::*;
use serde_json::json;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// 2030-01-02T03:04:05Z.
const T: u64 = 1_893_553_445;

fn document(value: Value) -> Document {
    Document::from(value)
}

/// An error and its causes, as `jctl` prints them (`{:#}` of anyhow).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[test]
fn times_are_rfc3339_seconds_or_never() {
    assert_eq!(time_text(None), "never");
    assert_eq!(
        time_text(Some(at(T) + Duration::from_millis(900))),
        "2030-01-02T03:04:05Z"
    );
    // Beyond what RFC 3339 can write: said, not a panic.
    let far = time_text(Some(at(300_000_000_000)));
    assert!(far.contains("300000000000"), "{far}");
}

#[test]
fn api_seconds_of_zero_mean_none() {
    assert_eq!(unix_time(0), None);
    assert_eq!(unix_time(-5), None);
    assert_eq!(unix_time(T as i64), Some(at(T)));
    assert_eq!(seconds(Duration::from_secs(90)), 90);
    assert_eq!(seconds(Duration::MAX), i64::MAX);
    assert_eq!(unix_millis("from", at(2)).unwrap(), 2000);
    let err = unix_millis("to", UNIX_EPOCH - Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(err, AdminError::BeforeEpoch { what: "to" }),
        "{err}"
    );
}

#[test]
fn tables_align_columns_and_trim_line_ends() {
    let out = table(
        &["Name", "Value"],
        &[
            vec!["ä-long-name".to_string(), String::new()],
            vec!["x".to_string(), "1".to_string()],
        ],
    );
    assert_eq!(
        out,
        "Name         Value\n\
         -----------  -----\n\
         ä-long-name\n\
         x            1\n"
    );
}

fn sample_status() -> ClusterStatus {
    ClusterStatus::from_proto(proto::StatusResponse {
        cluster_name: "dev".to_string(),
        server_version: "0.1.0".to_string(),
        user_ca_fingerprints: vec!["SHA256:u".to_string()],
        host_ca_fingerprints: vec!["SHA256:h".to_string()],
        ca_pins: vec!["sha256:p".to_string()],
        caller: "admin admin".to_string(),
        authorities: vec![
            proto::AuthorityStatus {
                r#type: "user".to_string(),
                active: "SHA256:u".to_string(),
                last_rotated_unix: T as i64,
                previous: vec![proto::PreviousAuthorityKey {
                    key: "SHA256:old".to_string(),
                    trusted_until_unix: T as i64 + 3600,
                }],
            },
            proto::AuthorityStatus {
                r#type: "host".to_string(),
                active: "SHA256:h".to_string(),
                last_rotated_unix: 0,
                previous: Vec::new(),
            },
            proto::AuthorityStatus {
                r#type: "tls".to_string(),
                active: "sha256:p".to_string(),
                last_rotated_unix: 0,
                previous: Vec::new(),
            },
        ],
        second_factor: "otp".to_string(),
        tunnel_strategy: "agent_mesh".to_string(),
        agent_connection_count: 1,
        ..Default::default()
    })
}

#[test]
fn status_reads_as_text() {
    assert_eq!(
        status_text(&sample_status()),
        "Cluster:        dev\n\
         Version:        0.1.0\n\
         You are:        admin admin\n\
         User CA:        SHA256:u (rotated 2030-01-02T03:04:05Z)\n\
         \x20               SHA256:old (old, trusted until 2030-01-02T04:04:05Z)\n\
         Host CA:        SHA256:h\n\
         CA pin:         sha256:p\n"
    );
}

#[test]
fn status_serialises_with_times_as_text() {
    let value = serde_json::to_value(sample_status()).unwrap();
    assert_eq!(value["authorities"][0]["type"], "user");
    assert_eq!(
        value["authorities"][0]["last_rotated"],
        "2030-01-02T03:04:05Z"
    );
    assert_eq!(
        value["authorities"][0]["previous"][0],
        json!({"key": "SHA256:old", "trusted_until": "2030-01-02T04:04:05Z"})
    );
    assert_eq!(value["authorities"][1]["last_rotated"], "never");
    assert_eq!(value["ca_pins"], json!(["sha256:p"]));
    // Only what jctl has always printed.
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "authorities",
            "ca_pins",
            "caller",
            "cluster_name",
            "host_ca_fingerprints",
            "server_version",
            "user_ca_fingerprints"
        ]
    );
}

#[test]
fn user_records_read_leniently_and_list_their_lock() {
    let alice = UserRecord::from_document(document(json!({
        "kind": "user",
        "metadata": {"name": "alice"},
        "spec": {"roles": ["access", 7, "editor"], "traits": {"logins": ["root"]}},
        "status": {"is_locked": true, "locked_until": T},
    })));
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.roles, ["access", "editor"]);
    assert_eq!(alice.logins, ["root"]);
    assert_eq!(alice.locked_until, Some(at(T)));
    let odd = UserRecord::from_document(document(json!({"metadata": {"name": 3}})));
    assert_eq!(odd.name, "");
    assert!(odd.roles.is_empty() && odd.locked_until.is_none());
    let sso = UserRecord::from_document(document(json!({
        "metadata": {"name": "sam@example.com"},
        "spec": {"roles": ["access"], "created_by": {"connector": {"type": "oidc", "id": "okta"}}},
    })));
    assert_eq!(sso.connector.as_deref(), Some("oidc/okta"));
    assert_eq!(
        users_table(&[alice, odd, sso]),
        "User             Roles          Logins  Source     Status\n\
         ---------------  -------------  ------  ---------  ---------------------------------\n\
         alice            access,editor  root    local      locked until 2030-01-02T03:04:05Z\n\
         \x20                                       local\n\
         sam@example.com  access                 oidc/okta\n"
    );
}

#[test]
fn node_records_show_labels_and_tunnels() {
    let node = NodeRecord::from_document(document(json!({
        "kind": "node",
        "metadata": {"name": "0b5c", "labels": {"env": "prod", "az": "b", "n": 1}},
        "spec": {
            "hostname": "web-1",
            "tunnels": [{"proxy": "p1", "since_unix": 1}, {"proxy": "p2"}, {"other": "x"}],
        },
    })))
    .unwrap();
    assert_eq!(node.uuid, "0b5c");
    assert_eq!(node.hostname, "web-1");
    assert_eq!(node.tunnels, ["p1", "p2"]);
    assert_eq!(node.labels.get("n").map(String::as_str), Some(""));
    let lonely = NodeRecord::from_document(document(json!({"metadata": {"name": "9f"}}))).unwrap();
    assert_eq!(
        nodes_table(&[node, lonely]),
        "Host   UUID  Labels            Tunnel\n\
         -----  ----  ----------------  ------------\n\
         web-1  0b5c  az=b,env=prod,n=  up via p1,p2\n\
         \x20      9f                      none\n"
    );
    assert_eq!(
        nodes_table(&[]),
        "No nodes have joined (or none sent a heartbeat in the last 15 s).\n"
    );
}

#[test]
fn a_document_that_is_no_node_record_is_refused() {
    let err = NodeRecord::from_document(document(json!({"kind": "node", "spec": {}}))).unwrap_err();
    assert!(matches!(err, AdminError::MalformedNode(_)), "{err}");
    assert_eq!(
        chain(&err),
        "the auth service sent a malformed node record: \
         auth:node: metadata.name: is required: the node's host UUID"
    );
}

fn sample_token(single_use: bool) -> JoinToken {
    JoinToken {
        token: "s3cr3t".to_string(),
        id: "ab12".to_string(),
        roles: vec!["node".to_string(), "proxy".to_string()],
        expires: Some(at(T)),
        ca_pins: vec!["sha256:p".to_string()],
        single_use,
    }
}

#[test]
fn a_new_join_token_says_how_to_use_it() {
    let once = join_token_text(&sample_token(true));
    assert!(
        once.starts_with(
            "The join token s3cr3t (id ab12) lets one host (once) join as node,proxy until \
             2030-01-02T03:04:05Z.\n\n"
        ),
        "{once}"
    );
    assert!(once.contains("      token_name: s3cr3t\n    ca_pin: \"sha256:p\"\n"));
    assert!(once.ends_with("The token is shown once; jctl tokens rm ab12 revokes it.\n"));
    assert!(join_token_text(&sample_token(false)).contains("lets any number of hosts join"));
    // The token is printed where asked for, and kept out of debug output.
    assert_eq!(
        serde_json::to_value(sample_token(true)).unwrap(),
        json!({
            "token": "s3cr3t", "id": "ab12", "roles": ["node", "proxy"],
            "expires": "2030-01-02T03:04:05Z", "ca_pins": ["sha256:p"], "single_use": true,
        })
    );
    assert!(!format!("{:?}", sample_token(true)).contains("s3cr3t"));
}

#[test]
fn join_tokens_list_by_id() {
    let tokens = [
        JoinTokenInfo {
            id: "ab12".to_string(),
            roles: vec!["node".to_string()],
            expires: Some(at(T)),
            kind: "dynamic".to_string(),
            single_use: true,
        },
        JoinTokenInfo {
            id: "static-1".to_string(),
            roles: vec!["node".to_string(), "proxy".to_string()],
            expires: None,
            kind: "static".to_string(),
            single_use: false,
        },
    ];
    assert_eq!(
        join_tokens_table(&tokens),
        "Id        Type        Expires               Use           Source\n\
         --------  ----------  --------------------  ------------  -------\n\
         ab12      node        2030-01-02T03:04:05Z  once          dynamic\n\
         static-1  node,proxy  never                 until expiry  static\n"
    );
    assert_eq!(
        serde_json::to_value(&tokens[1]).unwrap(),
        json!({"id": "static-1", "roles": ["node", "proxy"], "expires": "never",
               "kind": "static", "single_use": false})
    );
}

#[test]
fn rotations_say_what_to_redistribute() {
    let one = Rotation {
        rotated: vec!["user".to_string()],
        grace_period_ends: Some(at(T)),
        grace_period: Duration::from_secs(3600),
    };
    assert_eq!(
        rotation_text(&one),
        "Rotated the user CA. New certificates are signed by the new keys.\n\
         The old keys stay trusted until 2030-01-02T03:04:05Z.\n\
         OpenSSH servers: install `jctl auth export --type user` as TrustedUserCAKeys again.\n"
    );
    assert_eq!(
        serde_json::to_value(&one).unwrap(),
        json!({"rotated": ["user"], "grace_period_ends": "2030-01-02T03:04:05Z"})
    );
    let all = Rotation {
        rotated: vec!["user".to_string(), "host".to_string(), "tls".to_string()],
        grace_period_ends: None,
        grace_period: Duration::ZERO,
    };
    let text = rotation_text(&all);
    assert!(
        text.starts_with("Rotated the user, host, tls CAs."),
        "{text}"
    );
    assert!(text.contains("The old keys were retired at once"), "{text}");
    assert!(text.contains("re-sign OpenSSH host certificates"), "{text}");
    let tls = Rotation {
        rotated: vec!["tls".to_string()],
        grace_period_ends: Some(at(T)),
        grace_period: Duration::from_secs(1),
    };
    assert!(!rotation_text(&tls).contains("OpenSSH"));
}

#[test]
fn events_show_refusals_with_their_reason() {
    let events = [
        document(json!({
            "time": "2030-01-02T03:04:05.123Z", "event": "user.login", "code": "T1000W",
            "user": "alice", "addr.remote": "10.0.0.5:51234", "success": false,
            "error": "bad password",
        })),
        document(json!({
            "time": "2030-01-02T03:04:06Z", "event": "exec", "code": "T3002I",
            "user": null, "success": true, "pid": 4,
        })),
    ];
    assert_eq!(events[1].field_text("pid"), "4");
    assert_eq!(events[1].field_text("user"), "");
    assert_eq!(
        events_table(&events),
        "Time                      Event       Code    User   Address         Outcome\n\
         ------------------------  ----------  ------  -----  --------------  ---------------------\n\
         2030-01-02T03:04:05.123Z  user.login  T1000W  alice  10.0.0.5:51234  refused: bad password\n\
         2030-01-02T03:04:06Z      exec        T3002I                         ok\n"
    );
}

#[test]
fn files_split_into_named_documents() {
    let text = "# roles\nkind: role\nmetadata: {name: a}\n---\n---  \n# only a comment\n\n---\nkind: role\nmetadata: {name: b}\n";
    let documents = ResourceDocument::split("roles.yaml", text).unwrap();
    assert_eq!(
        documents,
        [
            ResourceDocument {
                source_name: "roles.yaml (document 1)".to_string(),
                text: "# roles\nkind: role\nmetadata: {name: a}\n".to_string(),
            },
            ResourceDocument {
                source_name: "roles.yaml (document 2)".to_string(),
                text: "kind: role\nmetadata: {name: b}\n".to_string(),
            },
        ]
    );
    let one = ResourceDocument::split("stdin", "---\nkind: user\n").unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].source_name, "stdin");
    // `---` inside a line is not a separator.
    let inline = ResourceDocument::split("f", "a: '---'\n b: --- \n").unwrap();
    assert_eq!(inline.len(), 1);
    let err = ResourceDocument::split("empty.yaml", "# nothing\n---\n\n").unwrap_err();
    assert_eq!(err.to_string(), "empty.yaml: holds no resource");
}

#[test]
fn new_locks_are_typed_lock_resources() {
    let end = NewLock::expires_after(at(T) + Duration::from_millis(700), Duration::from_secs(60));
    assert_eq!(end, Some(at(T + 60)));
    assert_eq!(NewLock::expires_after(at(T), Duration::MAX), None);

    let uuid = uuid::Uuid::new_v4();
    let lock = NewLock {
        target: LockTarget {
            user: Some("alice".to_string()),
            ..LockTarget::default()
        },
        message: String::new(),
        expires: end,
    }
    .into_lock(uuid)
    .unwrap();
    assert_eq!(lock.name(), uuid.to_string());
    assert_eq!(lock.kind(), "lock");
    // What the auth service reads back is what was built.
    let back = Lock::from_json(LOCK_SOURCE, &lock.to_json().unwrap()).unwrap();
    assert_eq!(back, lock);
    let value: Value = serde_json::from_str(&lock.to_json().unwrap()).unwrap();
    assert_eq!(value["version"], "v2");
    assert_eq!(
        value["spec"],
        json!({"target": {"user": "alice"}, "expires": "2030-01-02T03:05:05Z"})
    );
}

#[test]
fn lock_ends_read_as_the_auth_service_reads_them() {
    assert_eq!(
        NewLock::parse_expires("2030-01-02T05:04:05+02:00").unwrap(),
        at(T)
    );
    let err = NewLock::parse_expires("tomorrow").unwrap_err();
    assert_eq!(
        err.to_string(),
        "jctl lock: spec.expires: expected an RFC 3339 time such as 2030-01-02T15:04:05Z or \
         2030-01-02T15:04:05+02:00, got \"tomorrow\""
    );
    // The same words as the auth service's parser of a lock document.
    let document = json!({
        "kind": "lock", "version": "v2", "metadata": {"name": "x"},
        "spec": {"target": {"user": "a"}, "expires": "tomorrow"},
    });
    let server = Lock::from_json(LOCK_SOURCE, &document.to_string()).unwrap_err();
    assert_eq!(server.to_string(), err.to_string());
}

#[test]
fn errors_read_as_one_message_with_their_causes() {
    let refused = AdminError::from(tonic::Status::not_found("no user \"bob\""));
    assert_eq!(chain(&refused), "no user \"bob\"");
    assert_eq!(refused.code(), Some(tonic::Code::NotFound));
    let down = AdminError::from(tonic::Status::unavailable("connection reset"));
    assert_eq!(
        chain(&down),
        "connection reset (is the auth service running?)"
    );
    let malformed = AdminError::MalformedResource(Document::parse("{").unwrap_err());
    assert_eq!(
        chain(&malformed),
        "the auth service sent malformed JSON: EOF while parsing an object at line 1 column 1"
    );
    let large = AdminError::DocumentTooLarge {
        source_name: "big.yaml".to_string(),
        len: 5 * 1024 * 1024,
    };
    assert_eq!(
        large.to_string(),
        "big.yaml: the document is 5120 KiB; the auth API takes resources of at most 4092 KiB"
    );
    assert_eq!(large.code(), None);
}
