-- Active creatives whose 7-day CTR is below the low-CTR alarm threshold of the environment
-- ({{min_ctr}} and {{min_impressions}} are filled in from its env file).
SELECT creative_id, campaign_id, headline, impressions_7d, ctr_7d
FROM creative_performance
WHERE status = 'ACTIVE' AND impressions_7d >= {{min_impressions}} AND ctr_7d < {{min_ctr}}
ORDER BY ctr_7d ASC
