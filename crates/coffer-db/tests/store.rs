//! The metadata store's rules, against a real SQLite file.

use coffer_db::{AuditQuery, Db, DbError, NewAuditEntry};
use coffer_types::Role;

async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("coffer.db")).await.unwrap();
    (dir, db)
}

#[tokio::test]
async fn setup_happens_once_and_the_last_admin_stays() {
    let (_d, db) = db().await;
    let admin = db.create_first_admin("root", "hash").await.unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(matches!(
        db.create_first_admin("other", "hash").await,
        Err(DbError::Conflict(_))
    ));
    assert!(matches!(
        db.create_user("root", "h", Role::Viewer).await,
        Err(DbError::Taken(_))
    ));
    assert!(matches!(
        db.delete_user(&admin.id).await,
        Err(DbError::Conflict(_))
    ));
    assert!(matches!(
        db.update_user(&admin.id, None, Some(Role::Viewer)).await,
        Err(DbError::Conflict(_))
    ));
    // With a second admin, the first can go.
    let second = db.create_user("second", "h", Role::Admin).await.unwrap();
    db.update_user(&admin.id, None, Some(Role::Operator))
        .await
        .unwrap();
    assert!(matches!(
        db.delete_user(&second.id).await,
        Err(DbError::Conflict(_))
    ));
    db.delete_user(&admin.id).await.unwrap();
    assert!(matches!(
        db.user(&admin.id).await,
        Err(DbError::NotFound(_))
    ));
    assert!(matches!(
        db.delete_user("nope").await,
        Err(DbError::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_demotions_never_leave_no_admin() {
    let (_d, db) = db().await;
    let a = db.create_first_admin("a", "h").await.unwrap();
    let b = db.create_user("b", "h", Role::Admin).await.unwrap();
    let (ra, rb) = tokio::join!(
        db.update_user(&a.id, None, Some(Role::Viewer)),
        db.update_user(&b.id, None, Some(Role::Viewer))
    );
    assert!(ra.is_ok() != rb.is_ok(), "exactly one demotion succeeds");
    let admins = db
        .users()
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.role == Role::Admin)
        .count();
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn keys_sessions_settings_and_audit() {
    let (_d, db) = db().await;
    let u = db.create_first_admin("root", "h").await.unwrap();
    let k = db
        .create_key(&u.id, "ci", Role::Viewer, "hash1", "cf_ab", None)
        .await
        .unwrap();
    assert_eq!(
        db.key_by_hash("hash1").await.unwrap().unwrap().info.id,
        k.id
    );
    db.revoke_key(&k.id).await.unwrap();
    assert!(db.key_by_hash("hash1").await.unwrap().unwrap().revoked);
    assert!(db.keys(Some(&u.id)).await.unwrap().is_empty());

    let s = db
        .create_session(
            &u.id,
            chrono::Utc::now() + chrono::TimeDelta::hours(1),
            None,
        )
        .await
        .unwrap();
    assert!(!db.session(&s).await.unwrap().unwrap().revoked);
    db.revoke_session(&s).await.unwrap();
    assert!(db.session(&s).await.unwrap().unwrap().revoked);

    db.put_setting("retention", &serde_json::json!({"days": 7}))
        .await
        .unwrap();
    assert_eq!(
        db.setting("retention").await.unwrap().unwrap().value["days"],
        7
    );

    for (action, status) in [("POST /api/users", 201), ("DELETE /api/users/{id}", 409)] {
        let e = NewAuditEntry {
            user_id: Some(u.id.clone()),
            username: Some("root".into()),
            key_id: None,
            client_ip: Some("127.0.0.1".into()),
            action: action.into(),
            target: "/api/users".into(),
            status,
        };
        db.add_audit(&e).await.unwrap();
    }
    let all = db
        .audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].action, "DELETE /api/users/{id}", "newest first");
    let deletes = db
        .audit(&AuditQuery {
            action: Some("DELETE".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].outcome, coffer_types::Outcome::Failure);
}

#[tokio::test]
async fn a_database_from_a_newer_coffer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    drop(Db::open(&path).await.unwrap());
    // Pretend a later Coffer applied schema 999.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES (999, 'future', CURRENT_TIMESTAMP, 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert!(matches!(
        Db::open(&path).await,
        Err(DbError::NewerVersion(999))
    ));
}
