-- Active creatives whose 7-day CTR is below the low-CTR alarm threshold (0.4%).
SELECT creative_id, campaign_id, headline, impressions_7d, ctr_7d
FROM creative_performance
WHERE status = 'ACTIVE' AND impressions_7d >= 1000 AND ctr_7d < 0.004
ORDER BY ctr_7d ASC
