-- Each claim of an intent carries a token of its own (a random uuid, drawn
-- when a dispatcher claims the row; null while unclaimed). Renewing the
-- lease, deleting the row when done and postponing it after a failure all
-- name the token, so a dispatcher whose lease ran out cannot touch a row
-- another dispatcher claimed since, nor a row decided anew under the same key
-- after a delete (whose generation starts again at 1).
-- (platform/todo-core/src/intent.rs)
alter table intent add column claim uuid;
