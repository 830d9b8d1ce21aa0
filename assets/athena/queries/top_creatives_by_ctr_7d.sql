-- Top creatives by click-through rate over the last 7 days (with enough impressions to mean something).
SELECT creative_id, campaign_id, headline, impressions_7d, clicks_7d, ctr_7d, spend_usd_7d
FROM creative_performance
WHERE impressions_7d >= 1000
ORDER BY ctr_7d DESC
LIMIT 20
