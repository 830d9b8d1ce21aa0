-- Spend by campaign and day, newest first.
SELECT date, campaign_id, spend_usd, impressions, clicks, ctr
FROM daily_summary
ORDER BY date DESC, spend_usd DESC
