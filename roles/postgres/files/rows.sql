-- Every table of the database, one line each: its name, its number of rows and an md5 of all its rows in order,
-- as PostgreSQL writes them as text (the same in 15 and later for the types LiteLLM uses). An upgrade requires
-- these lines equal before the dump and after the restore.
select format('%s.%s rows=%s md5=%s', table_schema, table_name,
  (xpath('/row/n/text()', query_to_xml(
    format('select count(*) as n from %I.%I', table_schema, table_name), false, true, '')))[1]::text,
  (xpath('/row/h/text()', query_to_xml(
    format('select md5(coalesce(string_agg(t::text, chr(10) order by t::text), '''')) as h from %I.%I t',
           table_schema, table_name), false, true, '')))[1]::text)
from information_schema.tables
where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')
order by 1;
