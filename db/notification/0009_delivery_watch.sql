-- A pending notification whose delivery workflow instance the engine lost,
-- finished without delivering, or left without progress is started again by
-- the watchdog (a new instance, delivery-<id>-<attempt>-r<rescues>): rescues
-- counts those starts. The watchdog finds such rows by age through the index.
alter table notification add column rescues integer not null default 0;
create index notification_pending on notification (updated_at) where status = 'pending';
