-- Per creative: lifetime, last 7 days and last 30 days performance, joined with the
-- creative's latest content. Late conversions restate earlier days, so for each
-- (creative, day) only the row of the latest collection run counts.
WITH latest_rows AS (
    SELECT
        creative_id, campaign_id, account_id, date, impressions, clicks, cost_usd, conversions,
        row_number() OVER (PARTITION BY creative_id, date ORDER BY run_id DESC) AS rank_in_day
    FROM raw_analytics
),
daily AS (
    SELECT * FROM latest_rows WHERE rank_in_day = 1
),
latest_content AS (
    SELECT
        creative_id, status, headline, description, call_to_action, landing_page, image_url,
        row_number() OVER (PARTITION BY creative_id ORDER BY dt DESC, run_id DESC) AS rank_in_creative
    FROM raw_creatives
),
totals AS (
    SELECT
        creative_id,
        max(campaign_id) AS campaign_id,
        max(account_id) AS account_id,
        sum(impressions) AS impressions,
        sum(clicks) AS clicks,
        sum(cost_usd) AS spend_usd,
        sum(conversions) AS conversions,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '7' DAY THEN impressions ELSE 0 END) AS impressions_7d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '7' DAY THEN clicks ELSE 0 END) AS clicks_7d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '7' DAY THEN cost_usd ELSE 0 END) AS spend_usd_7d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '7' DAY THEN conversions ELSE 0 END) AS conversions_7d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '30' DAY THEN impressions ELSE 0 END) AS impressions_30d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '30' DAY THEN clicks ELSE 0 END) AS clicks_30d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '30' DAY THEN cost_usd ELSE 0 END) AS spend_usd_30d,
        sum(CASE WHEN date(date) >= current_date - INTERVAL '30' DAY THEN conversions ELSE 0 END) AS conversions_30d
    FROM daily
    GROUP BY creative_id
)
SELECT
    t.creative_id,
    t.campaign_id,
    t.account_id,
    c.status,
    c.headline,
    c.description,
    c.call_to_action,
    c.landing_page,
    c.image_url,
    t.impressions,
    t.clicks,
    t.spend_usd,
    t.conversions,
    CAST(t.clicks AS DOUBLE) / nullif(t.impressions, 0) AS ctr,
    t.spend_usd / nullif(t.clicks, 0) AS cpc_usd,
    1000 * t.spend_usd / nullif(t.impressions, 0) AS cpm_usd,
    CAST(t.conversions AS DOUBLE) / nullif(t.clicks, 0) AS conversion_rate,
    t.impressions_7d,
    t.clicks_7d,
    t.spend_usd_7d,
    t.conversions_7d,
    CAST(t.clicks_7d AS DOUBLE) / nullif(t.impressions_7d, 0) AS ctr_7d,
    t.spend_usd_7d / nullif(t.clicks_7d, 0) AS cpc_usd_7d,
    1000 * t.spend_usd_7d / nullif(t.impressions_7d, 0) AS cpm_usd_7d,
    CAST(t.conversions_7d AS DOUBLE) / nullif(t.clicks_7d, 0) AS conversion_rate_7d,
    t.impressions_30d,
    t.clicks_30d,
    t.spend_usd_30d,
    t.conversions_30d,
    CAST(t.clicks_30d AS DOUBLE) / nullif(t.impressions_30d, 0) AS ctr_30d,
    t.spend_usd_30d / nullif(t.clicks_30d, 0) AS cpc_usd_30d,
    1000 * t.spend_usd_30d / nullif(t.impressions_30d, 0) AS cpm_usd_30d,
    CAST(t.conversions_30d AS DOUBLE) / nullif(t.clicks_30d, 0) AS conversion_rate_30d
FROM totals t
LEFT JOIN latest_content c ON c.creative_id = t.creative_id AND c.rank_in_creative = 1
