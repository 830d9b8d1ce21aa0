-- Per day and campaign: totals of the latest collection run's rows, and how many creatives
-- were active (had impressions) that day.
WITH latest_rows AS (
    SELECT
        creative_id, campaign_id, date, impressions, clicks, cost_usd, conversions,
        row_number() OVER (PARTITION BY creative_id, date ORDER BY run_id DESC) AS rank_in_day
    FROM raw_analytics
)
SELECT
    date,
    campaign_id,
    sum(impressions) AS impressions,
    sum(clicks) AS clicks,
    sum(cost_usd) AS spend_usd,
    sum(conversions) AS conversions,
    CAST(sum(clicks) AS DOUBLE) / nullif(sum(impressions), 0) AS ctr,
    sum(cost_usd) / nullif(sum(clicks), 0) AS cpc_usd,
    1000 * sum(cost_usd) / nullif(sum(impressions), 0) AS cpm_usd,
    CAST(sum(conversions) AS DOUBLE) / nullif(sum(clicks), 0) AS conversion_rate,
    count(DISTINCT CASE WHEN impressions > 0 THEN creative_id END) AS active_creatives
FROM latest_rows
WHERE rank_in_day = 1
GROUP BY date, campaign_id
