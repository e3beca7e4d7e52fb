-- The admin's federation page lists inbound activities that could not be applied (given up,
-- or failing and waiting for a retry); this keeps that listing off a scan of the archive.
CREATE INDEX inbox_activities_trouble ON inbox_activities (id)
    WHERE state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL);
