-- The approver inbox lists pending requests oldest first: `WHERE state = 'pending' ORDER BY id`.
-- With only (state, expires_at) that read every pending row and sorted them all for each page;
-- with (state, id) it reads the page's rows in order and stops.
CREATE INDEX requests_state_id ON requests (state, id);
