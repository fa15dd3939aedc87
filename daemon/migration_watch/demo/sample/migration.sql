-- The expand migration: customer_id -> organization_id (checklist Phase 1.1 and 1.2).
-- Adds organization_id, backfills it, indexes it and moves the RLS policies onto it.
-- customer_id stays (it is the rollback path during the monitoring week).
-- Idempotent: safe to run twice.

-- customer_configs: the customer is the 'owner' member of the organization.
ALTER TABLE public.customer_configs
  ADD COLUMN IF NOT EXISTS organization_id uuid REFERENCES public.organizations (id) ON DELETE CASCADE;

UPDATE public.customer_configs cc
SET organization_id = (
  SELECT om.organization_id
  FROM public.organization_members om
  WHERE om.user_id = cc.customer_id AND om.role = 'owner'
  ORDER BY om.created_at, om.organization_id
  LIMIT 1
)
WHERE cc.organization_id IS NULL AND cc.customer_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS idx_customer_configs_organization_id
  ON public.customer_configs (organization_id);

DROP POLICY IF EXISTS customer_configs_customer_access ON public.customer_configs;
DROP POLICY IF EXISTS customer_configs_organization_access ON public.customer_configs;
CREATE POLICY customer_configs_organization_access ON public.customer_configs
  FOR ALL TO authenticated
  USING (organization_id IN (SELECT om.organization_id FROM public.organization_members om
                             WHERE om.user_id = auth.uid()))
  WITH CHECK (organization_id IN (SELECT om.organization_id FROM public.organization_members om
                                  WHERE om.user_id = auth.uid()));

-- 20251023_add_organization_id_to_conversations.sql: backfill from customer_configs via domain_id.
ALTER TABLE public.conversations
  ADD COLUMN IF NOT EXISTS organization_id uuid REFERENCES public.organizations (id) ON DELETE CASCADE;

UPDATE public.conversations c
SET organization_id = cc.organization_id
FROM public.domains d
JOIN public.customer_configs cc ON cc.id = d.customer_config_id
WHERE c.domain_id = d.id
  AND c.organization_id IS NULL
  AND cc.organization_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS idx_conversations_organization_id
  ON public.conversations (organization_id);

DROP POLICY IF EXISTS conversations_customer_access ON public.conversations;
DROP POLICY IF EXISTS conversations_organization_access ON public.conversations;
CREATE POLICY conversations_organization_access ON public.conversations
  FOR ALL TO authenticated
  USING (organization_id IN (SELECT om.organization_id FROM public.organization_members om
                             WHERE om.user_id = auth.uid()))
  WITH CHECK (organization_id IN (SELECT om.organization_id FROM public.organization_members om
                                  WHERE om.user_id = auth.uid()));

-- 20251023_add_organization_id_to_scraper_configs.sql: conditional, the table may not exist.
DO $scraper$
BEGIN
  IF to_regclass('public.scraper_configs') IS NULL THEN
    RAISE NOTICE 'scraper_configs does not exist, skipping';
    RETURN;
  END IF;

  ALTER TABLE public.scraper_configs
    ADD COLUMN IF NOT EXISTS organization_id uuid REFERENCES public.organizations (id) ON DELETE CASCADE;

  UPDATE public.scraper_configs s
  SET organization_id = cc.organization_id
  FROM public.customer_configs cc
  WHERE cc.domain = s.domain
    AND cc.customer_id = s.customer_id
    AND s.organization_id IS NULL
    AND cc.organization_id IS NOT NULL;

  CREATE INDEX IF NOT EXISTS idx_scraper_configs_organization_id
    ON public.scraper_configs (organization_id);

  DROP POLICY IF EXISTS scraper_configs_customer_access ON public.scraper_configs;
  DROP POLICY IF EXISTS scraper_configs_organization_access ON public.scraper_configs;
  CREATE POLICY scraper_configs_organization_access ON public.scraper_configs
    FOR ALL TO authenticated
    USING (organization_id IN (SELECT om.organization_id FROM public.organization_members om
                               WHERE om.user_id = auth.uid()))
    WITH CHECK (organization_id IN (SELECT om.organization_id FROM public.organization_members om
                                    WHERE om.user_id = auth.uid()));
END
$scraper$;
