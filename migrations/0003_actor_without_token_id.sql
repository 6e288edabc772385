-- berth schema, version 3: actors without a token id.
-- Earlier berths appended " (token <8 hex digits>)", the start of the API token's
-- sha256, to the actor of every API write. Events and releases are readable without
-- a token under api.open_reads, so that let anyone on loopback test token guesses
-- offline. The actor is now the X-Berth-Actor name alone; this removes the suffix
-- from the rows written before. (X-Berth-Actor names cannot contain a space, so the
-- suffix is never part of a name.)
UPDATE events SET actor = substr(actor, 1, length(actor) - 17)
 WHERE actor GLOB '?* (token [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])';
UPDATE releases SET actor = substr(actor, 1, length(actor) - 17)
 WHERE actor GLOB '?* (token [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])';
