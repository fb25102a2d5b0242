-- Limits: the current version of each usage limit of one agent ({limit_id} = '' for all of them), deleted
-- ones left out. A limit is written as a new row with a higher version (migration 0005); the newest row of
-- each limit_id is the limit, whether or not the ReplacingMergeTree has merged the older ones away yet.
SELECT limit_id, scope, customer_id, meter, unit, model, period, quantity, created_at, updated_at
FROM
(
    SELECT *
    FROM limits
    WHERE agent_id = {agent_id:String}
      AND ({limit_id:String} = '' OR limit_id = {limit_id:String})
    ORDER BY limit_id, version DESC
    LIMIT 1 BY limit_id
)
WHERE deleted = 0
ORDER BY meter, model, period, scope, customer_id
