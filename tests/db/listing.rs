//! A user's list (and its `count(*)`) finds that user's rows through an
//! index on `user_id`, however large the table grows: every query in the
//! notification and recurring-task services' offline query data (`.sqlx/`,
//! exactly the SQL they run) that filters its table by `user_id` is
//! EXPLAINed, with its parameters bound as the API binds them, over tables
//! of realistic size (many users, a few hundred rows each) after ANALYZE.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use sqlx::PgPool;
use todo_local_stack::workspace_root;

use crate::{Ctx, NOTIFICATION, RECURRING, trial};

pub fn trials(ctx: &Ctx) -> Vec<libtest_mimic::Trial> {
    vec![
        trial!(
            ctx,
            a_users_notifications_and_their_count_are_found_by_index
        ),
        trial!(
            ctx,
            a_users_series_and_reminders_and_their_counts_are_found_by_index
        ),
    ]
}

/// Users in the tables, and rows per user in each.
const USERS: i64 = 300;
const PER_USER: i64 = 200;
/// The user whose list is asked for.
const USER: &str = "user-7";

async fn a_users_notifications_and_their_count_are_found_by_index(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&NOTIFICATION).await?;
    sqlx::query(
        "insert into notification (id, reminder_event_id, task_id, user_id, channel, title, remind_at, status, \
         created_at, sent_at) \
         select gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'user-' || (n % $1), 'in_app', 'call', \
                now() - n * interval '1 minute', (array['pending', 'sent', 'sent', 'sent', 'failed'])[1 + n % 5], \
                now() - n * interval '1 minute', case when n % 5 between 1 and 3 then now() - n * interval '1 minute' end \
         from generate_series(1, $2::int8) n",
    )
    .bind(USERS)
    .bind(USERS * PER_USER)
    .execute(&pool)
    .await?;
    expect_user_index(&pool, "notification-service", "notification", 2).await
}

async fn a_users_series_and_reminders_and_their_counts_are_found_by_index(ctx: &Ctx) -> Result<()> {
    let pool = ctx.fresh_schema(&RECURRING).await?;
    sqlx::query(
        "insert into recurrence_schedule (id, user_id, title, frequency, timezone, anchor_day, anchor_time, \
         next_due_date, current_task_id, is_active, ended_reason, created_at) \
         select id, 'user-' || (n % $1), 'stand-up', 'daily', 'UTC', 1, '08:00', now() + interval '1 day', id, \
                n % 4 <> 0, case when n % 4 = 0 then 'deleted' end, now() - n * interval '1 minute' \
         from (select gen_random_uuid() as id, n from generate_series(1, $2::int8) n) s",
    )
    .bind(USERS)
    .bind(USERS * PER_USER)
    .execute(&pool)
    .await?;
    sqlx::query(
        "insert into reminder (task_id, user_id, title, remind_at, status, fired_at) \
         select gen_random_uuid(), 'user-' || (n % $1), 'call', now() - n * interval '1 minute', \
                (array['scheduled', 'fired', 'fired', 'cancelled'])[1 + n % 4], \
                case when n % 4 in (1, 2) then now() - n * interval '1 minute' end \
         from generate_series(1, $2::int8) n",
    )
    .bind(USERS)
    .bind(USERS * PER_USER)
    .execute(&pool)
    .await?;
    expect_user_index(&pool, "recurring-task-service", "recurrence_schedule", 2).await?;
    expect_user_index(&pool, "recurring-task-service", "reminder", 2).await
}

/// Every query of `crate_name` over `table` filtered by `user_id` (at least
/// `expected` of them) reads the table only through an index whose
/// condition is on `user_id`.
async fn expect_user_index(
    pool: &PgPool,
    crate_name: &str,
    table: &str,
    expected: usize,
) -> Result<()> {
    sqlx::query(&format!("analyze {table}"))
        .execute(pool)
        .await?;
    let queries = user_scoped_queries(&workspace_root().join("platform").join(crate_name), table)?;
    ensure!(
        queries.len() >= expected,
        "{crate_name}: {} user-scoped queries over {table} in .sqlx, expected {expected}",
        queries.len()
    );
    for (sql, params) in queries {
        let plan = explain(pool, &sql, &params).await?;
        let mut nodes = Vec::new();
        walk(&plan[0]["Plan"], &mut nodes);
        let shown = serde_json::to_string_pretty(&plan[0]["Plan"])?;
        ensure!(
            !nodes
                .iter()
                .any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == table),
            "a sequential scan of {table} for one user's rows:\n{sql}\n{shown}"
        );
        ensure!(
            nodes.iter().any(|n| n["Index Name"].is_string()
                && n["Index Cond"]
                    .as_str()
                    .is_some_and(|c| c.contains("user_id"))),
            "no index condition on user_id:\n{sql}\n{shown}"
        );
    }
    Ok(())
}

/// Every node of a plan.
fn walk<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, out);
    }
}

/// The queries in a crate's `.sqlx/` whose main table is `table` and that
/// filter it by `user_id`, with their parameters' types.
fn user_scoped_queries(crate_dir: &Path, table: &str) -> Result<Vec<(String, Vec<String>)>> {
    let dir = crate_dir.join(".sqlx");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let data: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let sql = data["query"].as_str().unwrap_or_default().to_owned();
        let lower = sql.to_lowercase();
        let main_table = [format!("from {table} "), format!("from {table}\n")]
            .iter()
            .any(|f| lower.contains(f.as_str()) || lower.ends_with(f.trim_end()));
        if !lower.trim_start().starts_with("select")
            || !main_table
            || !lower.contains("user_id = $")
        {
            continue;
        }
        let params = data["describe"]["parameters"]["Left"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        found.push((sql, params));
    }
    Ok(found)
}

/// The number after `marker` in `sql` (`$3` in `user_id = $3`), if any.
fn param_after(sql: &str, marker: &str) -> Option<usize> {
    let rest = &sql[sql.find(marker)? + marker.len()..];
    rest.trim_start()
        .strip_prefix('$')?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// EXPLAIN (FORMAT JSON) of `sql` with the user's id, a page of 50 from the
/// start, and every other filter absent, as a user's own list is asked.
async fn explain(pool: &PgPool, sql: &str, params: &[String]) -> Result<Value> {
    let user = param_after(sql, "user_id =");
    let limit = param_after(sql, "limit");
    let offset = param_after(sql, "offset");
    let explain = format!("explain (format json) {sql}");
    let mut query = sqlx::query_scalar::<_, Value>(&explain);
    for (i, ty) in params.iter().enumerate() {
        let n = Some(i + 1);
        query = match ty.as_str() {
            "Text" if n == user => query.bind(USER),
            "Text" => query.bind(None::<String>),
            "Int8" if n == limit => query.bind(50_i64),
            "Int8" if n == offset => query.bind(0_i64),
            "Int8" => query.bind(None::<i64>),
            "Uuid" => query.bind(None::<uuid::Uuid>),
            "Bool" => query.bind(None::<bool>),
            other => anyhow::bail!("no value for a parameter of type {other} in {sql}"),
        };
    }
    Ok(query.fetch_one(pool).await?)
}
