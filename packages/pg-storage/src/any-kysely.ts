import type { Kysely, Transaction } from 'kysely';

/**
 * A Kysely instance of any database type. The stores query only their own schema, in raw SQL, so
 * the application's table types do not matter to them; and a `Kysely<AppDatabase>` is not
 * assignable to `Kysely<unknown>`, so `any` is the one type every application's instance fits.
 */
// biome-ignore lint/suspicious/noExplicitAny: the application's database type is irrelevant here.
export type AnyKysely = Kysely<any>;

/** A Kysely transaction of any database type (what command handlers receive). */
// biome-ignore lint/suspicious/noExplicitAny: the application's database type is irrelevant here.
export type AnyTransaction = Transaction<any>;
