-- The W3C traceparent of the request that started a broadcast, or queued an appointment
-- change's message, so that each later provider send joins that request's trace. Written
-- only while spans are exported ([telemetry] otlp_endpoint); a broadcast's messages leave
-- theirs empty and take the broadcast's.
ALTER TABLE broadcasts ADD COLUMN traceparent TEXT;
ALTER TABLE messages ADD COLUMN traceparent TEXT;
