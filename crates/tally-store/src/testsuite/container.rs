//! The tag container's drafts and versions: drafts replace each other, versions number
//! themselves per container and never change, the live version is the newest, concurrent
//! publishes get distinct numbers, and everything survives a reopen.

use std::sync::Arc;

use super::{NOW, TestStore};
use crate::ContainerPublish;

fn publish(document: &str, note: &str) -> ContainerPublish {
    ContainerPublish {
        document: document.into(),
        note: note.into(),
        copied_from: None,
    }
}

/// Draft, publish, rollback as a copy, and nothing of one container leaks into another.
pub async fn drafts_and_numbered_versions_survive_a_reopen<S: TestStore>() {
    let (store, guard) = S::for_test().await;
    assert_eq!(store.container_draft("web").await.unwrap(), None);
    assert_eq!(store.live_container_version("web").await.unwrap(), None);
    assert_eq!(store.container_version("web", None).await.unwrap(), None);

    store
        .save_container_draft(NOW, "web", r#"{"tags":{}}"#)
        .await
        .unwrap();
    let later = crate::testsuite::NOW;
    let later = tally_core::timestamp::Timestamp::from_millis(later.millis() + 1000);
    store
        .save_container_draft(later, "web", r#"{"tags":{"a":1}}"#)
        .await
        .unwrap();
    let draft = store.container_draft("web").await.unwrap().unwrap();
    assert_eq!(draft.document, r#"{"tags":{"a":1}}"#);
    assert_eq!(draft.updated, later);

    let v1 = store
        .publish_container(NOW, "web", publish("{\"v\":1}", "first"))
        .await
        .unwrap();
    let v2 = store
        .publish_container(later, "web", publish("{\"v\":2}", "second"))
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v2.published, later);
    // Another container numbers its own versions.
    let other = store
        .publish_container(NOW, "app", publish("{}", "app"))
        .await
        .unwrap();
    assert_eq!(other.version, 1);
    assert_eq!(store.live_container_version("web").await.unwrap(), Some(2));

    // A rollback is a new version copying an earlier one.
    let old = store
        .container_version("web", Some(1))
        .await
        .unwrap()
        .unwrap();
    let v3 = store
        .publish_container(
            later,
            "web",
            ContainerPublish {
                document: old.document.clone(),
                note: "rollback to 1".into(),
                copied_from: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!((v3.version, v3.copied_from), (3, Some(1)));

    let store = store.reopen(&guard).await;
    let live = store.container_version("web", None).await.unwrap().unwrap();
    assert_eq!(live.info, v3);
    assert_eq!(live.document, "{\"v\":1}");
    assert_eq!(
        store
            .container_version("web", Some(2))
            .await
            .unwrap()
            .unwrap()
            .document,
        "{\"v\":2}"
    );
    assert_eq!(store.container_version("web", Some(9)).await.unwrap(), None);
    let listed = store.container_versions("web").await.unwrap();
    assert_eq!(listed, [v3, v2, v1]);
    assert_eq!(listed[2].note, "first");
    assert_eq!(store.container_draft("web").await.unwrap().unwrap(), draft);
    store.close().await;
}

/// Publishes racing on one container each get their own number; none is lost.
pub async fn concurrent_publishes_get_distinct_numbers<S: TestStore>() {
    let (store, _guard) = S::for_test().await;
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .publish_container(NOW, "web", publish(&format!("{{\"n\":{i}}}"), "race"))
                    .await
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<u32>>());
    assert_eq!(store.container_versions("web").await.unwrap().len(), 8);
    store.close().await;
}
