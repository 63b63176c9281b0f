// The tables of migrations/{sqlite,postgres}; both backends share this one schema.

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        status -> Text,
        admin -> Bool,
        created_at -> BigInt,
        roles -> Text,
    }
}

diesel::table! {
    roles (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        privileges -> Text,
        #[sql_name = "roles"]
        role_ids -> Text,
        builtin -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    blob_stores (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        attributes -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    blob_store_removals (name) {
        name -> Text,
        path -> Text,
        trash -> Text,
        owner -> Text,
        claimed_until -> BigInt,
        created_at -> BigInt,
        kind -> Text,
        attributes -> Text,
    }
}

diesel::table! {
    repositories (id) {
        id -> BigInt,
        name -> Text,
        format -> Text,
        kind -> Text,
        blob_store -> Text,
        config -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        cache_invalidated_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    assets (repository_id, path) {
        repository_id -> BigInt,
        path -> Text,
        kind -> Text,
        component -> Nullable<Text>,
        digest -> Nullable<Text>,
        size -> BigInt,
        content_type -> Nullable<Text>,
        link -> Nullable<Text>,
        attributes -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_downloaded -> Nullable<BigInt>,
        download_count -> BigInt,
    }
}

diesel::table! {
    uploads (id) {
        id -> Text,
        repository_id -> BigInt,
        component -> Text,
        blob_store -> Text,
        upload_offset -> BigInt,
        hash_state -> Binary,
        created_at -> BigInt,
        updated_at -> BigInt,
        owner -> Nullable<Text>,
        writer -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        taken_over -> Bool,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        username -> Text,
        name -> Text,
        token_hash -> Text,
        prefix -> Text,
        readonly -> Bool,
        repository -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        realm -> Text,
        directory_dn -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        username -> Text,
        realm -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Nullable<Text>,
        address -> Nullable<Text>,
        action -> Text,
        repository -> Nullable<Text>,
        object -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    blobs (blob_store, digest) {
        blob_store -> Text,
        digest -> Text,
        size -> BigInt,
        state -> Text,
        touched_at -> BigInt,
        marked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        name -> Text,
        type_id -> Text,
        properties -> Text,
        schedule -> Text,
        enabled -> Bool,
        next_run -> Nullable<BigInt>,
        run_id -> Nullable<Text>,
        running_node -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        stop_requested -> Bool,
        last_run -> Nullable<BigInt>,
        last_result -> Nullable<Text>,
        last_duration_ms -> Nullable<BigInt>,
        last_message -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    task_runs (id) {
        id -> Text,
        task_id -> Text,
        node -> Text,
        trigger -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        result -> Text,
        message -> Text,
        report -> Text,
    }
}

diesel::table! {
    cleanup_policies (name) {
        name -> Text,
        format -> Text,
        config -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    login_failures (username, client) {
        username -> Text,
        client -> Text,
        count -> BigInt,
        last_at -> BigInt,
        paused_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// SQLite only (see `db::counters`).
    change_counters (kind) {
        kind -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    webhooks (id) {
        id -> BigInt,
        name -> Text,
        url -> Text,
        secret -> Nullable<Text>,
        event_types -> Text,
        repository -> Nullable<Text>,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        webhook_id -> BigInt,
        delivery_id -> Text,
        event_id -> Text,
        action -> Nullable<Text>,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        claimed_by -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> BigInt,
        delivery -> BigInt,
        attempt -> Integer,
        node -> Text,
        at -> BigInt,
        duration_ms -> BigInt,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
    }
}
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery));

diesel::table! {
    /// npm web logins in progress (see `db::web_logins`).
    web_logins (id) {
        id -> Text,
        done_hash -> Text,
        repository -> Text,
        client -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        username -> Nullable<Text>,
        token -> Nullable<Text>,
    }
}

diesel::joinable!(task_runs -> tasks (task_id));
diesel::joinable!(assets -> repositories (repository_id));

diesel::table! {
    privileges (name) {
        name -> Text,
        #[sql_name = "type"]
        kind -> Text,
        description -> Text,
        definition -> Text,
        grants -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    health_checks (repository_id) {
        repository_id -> BigInt,
        enabled -> Bool,
        changed_by -> Nullable<Text>,
        changed_at -> BigInt,
        checked_at -> Nullable<BigInt>,
        report -> Nullable<Text>,
    }
}

diesel::joinable!(health_checks -> repositories (repository_id));

diesel::allow_tables_to_appear_in_same_query!(
    change_counters,
    settings,
    privileges,
    users,
    roles,
    api_tokens,
    sessions,
    audit_events,
    blob_stores,
    blob_store_removals,
    repositories,
    assets,
    uploads,
    blobs,
    tasks,
    task_runs,
    cleanup_policies,
    login_failures,
    webhooks,
    webhook_deliveries,
    webhook_attempts,
    web_logins,
    health_checks
);
