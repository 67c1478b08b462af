-- Quickstart example data for schema.sql: 3 authors, 6 books, 3 members, 4 loans (2 still out).

insert into authors (name, born) values
  ('Ursula K. Le Guin', 1929),
  ('Italo Calvino', 1923),
  ('Octavia E. Butler', 1947);

insert into books (author_id, title, published)
select a.author_id, b.title, b.published
from (values
  ('Ursula K. Le Guin', 'A Wizard of Earthsea', 1968),
  ('Ursula K. Le Guin', 'The Dispossessed', 1974),
  ('Italo Calvino', 'Invisible Cities', 1972),
  ('Italo Calvino', 'If on a winter''s night a traveler', 1979),
  ('Octavia E. Butler', 'Kindred', 1979),
  ('Octavia E. Butler', 'Parable of the Sower', 1993)
) as b(author, title, published)
join authors a on a.name = b.author;

insert into members (name, joined_on) values
  ('Ada', '2024-01-15'),
  ('Grace', '2024-03-02'),
  ('Linus', '2025-06-30');

insert into loans (book_id, member_id, loaned_on, returned_on)
select b.book_id, m.member_id, l.loaned_on::date, l.returned_on::date
from (values
  ('Kindred', 'Ada', '2025-01-10', '2025-01-24'),
  ('Invisible Cities', 'Grace', '2025-02-01', null),
  ('The Dispossessed', 'Ada', '2025-02-03', null),
  ('A Wizard of Earthsea', 'Linus', '2025-02-05', '2025-02-20')
) as l(title, member, loaned_on, returned_on)
join books b on b.title = l.title
join members m on m.name = l.member;
