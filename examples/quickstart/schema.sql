-- Quickstart example schema: a small lending library.
-- Prepared by scripts/quickstart.sh together with data.sql; any psql script works the same way.

create table authors (
  author_id  integer generated always as identity primary key,
  name       text not null unique,
  born       integer
);

create table books (
  book_id    integer generated always as identity primary key,
  author_id  integer not null references authors,
  title      text not null,
  published  integer not null
);

create table members (
  member_id  integer generated always as identity primary key,
  name       text not null,
  joined_on  date not null default current_date
);

create table loans (
  book_id    integer not null references books,
  member_id  integer not null references members,
  loaned_on  date not null,
  returned_on date,
  primary key (book_id, loaned_on),
  check (returned_on is null or returned_on >= loaned_on)
);

create index loans_open on loans (book_id) where returned_on is null;

-- Books that are out right now.
create view books_on_loan as
  select b.title, m.name as member, l.loaned_on
  from loans l join books b using (book_id) join members m using (member_id)
  where l.returned_on is null;
